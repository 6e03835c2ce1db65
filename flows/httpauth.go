package flows

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/cors"
	"golang.org/x/time/rate"
)

// Authentication, CORS and limits of HTTP triggers. They wrap a route
// before anything of the request is read (HMAC, which signs the body,
// is checked once the body is read).

type claimsKey struct{}

// authenticate checks the request's API key and bearer token, as the
// trigger requires, and returns the request with the token's claims. On
// failure it has answered 401.
func authenticate(t *HTTPTrigger, w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	if !authorized(t, r) {
		w.Header().Set("WWW-Authenticate", `ApiKey header="`+t.KeyHeader+`"`)
		httpError(w, http.StatusUnauthorized, "missing or wrong API key in "+t.KeyHeader, "")
		return r, false
	}
	claims, err := checkJWT(t, r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		httpError(w, http.StatusUnauthorized, "bearer token refused: "+err.Error(), "")
		return r, false
	}
	if claims != nil {
		r = r.WithContext(context.WithValue(r.Context(), claimsKey{}, map[string]any(claims)))
	}
	return r, true
}

// apiKeys reads the accepted keys from the trigger's environment
// variable, at each request, so rotating keys needs no restart.
func apiKeys(t *HTTPTrigger) []string {
	var keys []string
	for _, k := range strings.Split(os.Getenv(t.KeysEnv), ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

func authorized(t *HTTPTrigger, r *http.Request) bool {
	if t.KeysEnv == "" {
		return true
	}
	got := r.Header.Get(t.KeyHeader)
	ok := false
	for _, k := range apiKeys(t) {
		// Compare every key in constant time: no early exit to time.
		if subtle.ConstantTimeCompare([]byte(got), []byte(k)) == 1 {
			ok = true
		}
	}
	return ok && got != ""
}

// bearer returns the token of an Authorization header; the scheme is
// case-insensitive (RFC 9110).
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// checkJWT verifies the request's bearer token when the trigger requires
// one, and returns its claims (nil when it requires none).
func checkJWT(t *HTTPTrigger, r *http.Request) (jwt.MapClaims, error) {
	if t.JWTSecretEnv == "" && t.JWTKeyEnv == "" {
		return nil, nil
	}
	raw, ok := bearer(r)
	if !ok {
		return nil, errors.New("missing bearer token")
	}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired()}
	if t.JWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(t.JWTIssuer))
	}
	if t.JWTAudience != "" {
		opts = append(opts, jwt.WithAudience(t.JWTAudience))
	}
	var keyFunc jwt.Keyfunc
	if t.JWTSecretEnv != "" {
		opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
		secret := os.Getenv(t.JWTSecretEnv)
		if secret == "" {
			return nil, fmt.Errorf("no secret in %s", t.JWTSecretEnv)
		}
		keyFunc = func(*jwt.Token) (any, error) { return []byte(secret), nil }
	} else {
		opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
		key, err := jwt.ParseRSAPublicKeyFromPEM([]byte(os.Getenv(t.JWTKeyEnv)))
		if err != nil {
			return nil, fmt.Errorf("public key in %s: %w", t.JWTKeyEnv, err)
		}
		keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, claims, keyFunc, opts...); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkHMAC verifies the body's HMAC-SHA256 signature when the trigger
// requires one.
func checkHMAC(t *HTTPTrigger, r *http.Request, body []byte) error {
	if t.HMACEnv == "" {
		return nil
	}
	secret := os.Getenv(t.HMACEnv)
	if secret == "" {
		return fmt.Errorf("no secret in %s", t.HMACEnv)
	}
	got, err := hex.DecodeString(strings.TrimPrefix(r.Header.Get(t.HMACHeader), "sha256="))
	if err != nil || len(got) == 0 {
		return fmt.Errorf("missing or malformed %s", t.HMACHeader)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	if t.HMACTimestampHeader != "" {
		ts := r.Header.Get(t.HMACTimestampHeader)
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return fmt.Errorf("missing or malformed %s (Unix seconds)", t.HMACTimestampHeader)
		}
		if d := time.Since(time.Unix(sec, 0)); d > t.HMACTolerance || d < -t.HMACTolerance {
			return fmt.Errorf("%s is %s from now, beyond the %s accepted (a replayed request?)", t.HMACTimestampHeader, d.Round(time.Second), t.HMACTolerance)
		}
		mac.Write([]byte(ts + "."))
	}
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%s does not match the body", t.HMACHeader)
	}
	return nil
}

// withCORS answers preflight requests and sets CORS headers for the
// trigger's allowed origins (github.com/rs/cors).
func withCORS(t *HTTPTrigger, h http.Handler) http.Handler {
	if len(t.CORSOrigins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: t.CORSOrigins,
		AllowedMethods: t.Methods,
		AllowedHeaders: append([]string{"Content-Type", "Authorization", t.KeyHeader}, t.CORSHeaders...),
		ExposedHeaders: []string{"Location", "Retry-After", "X-Sluice-Run"},
		MaxAge:         600,
	}).Handler(h)
}

// limit enforces a route's rate and concurrency limits: 429 with
// Retry-After beyond them.
func limit(t *HTTPTrigger, next http.Handler) http.Handler {
	var lim *rate.Limiter
	if t.Rate > 0 {
		lim = rate.NewLimiter(rate.Limit(t.Rate), max(t.Burst, 1))
	}
	var slots chan struct{}
	if t.MaxConcurrent > 0 {
		slots = make(chan struct{}, t.MaxConcurrent)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lim != nil {
			res := lim.Reserve()
			if d := res.Delay(); d > 0 {
				res.Cancel()
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
				httpError(w, http.StatusTooManyRequests, "rate limit exceeded", "")
				return
			}
		}
		if slots != nil {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			default:
				w.Header().Set("Retry-After", "1")
				httpError(w, http.StatusTooManyRequests, "too many requests in progress on this route", "")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
