package flows

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rs/cors"
)

type claimsKey struct{}

// checkJWT verifies the request's bearer token when the flow requires one,
// and returns its claims (nil when the flow requires none).
func checkJWT(f *Flow, r *http.Request) (jwt.MapClaims, error) {
	t := f.Trigger
	if t.HTTPJWTSecretEnv == "" && t.HTTPJWTKeyEnv == "" {
		return nil, nil
	}
	raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || raw == "" {
		return nil, errors.New("missing bearer token")
	}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired()}
	if t.HTTPJWTIssuer != "" {
		opts = append(opts, jwt.WithIssuer(t.HTTPJWTIssuer))
	}
	if t.HTTPJWTAudience != "" {
		opts = append(opts, jwt.WithAudience(t.HTTPJWTAudience))
	}
	var keyFunc jwt.Keyfunc
	if t.HTTPJWTSecretEnv != "" {
		opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
		secret := os.Getenv(t.HTTPJWTSecretEnv)
		if secret == "" {
			return nil, fmt.Errorf("no secret in %s", t.HTTPJWTSecretEnv)
		}
		keyFunc = func(*jwt.Token) (any, error) { return []byte(secret), nil }
	} else {
		opts = append(opts, jwt.WithValidMethods([]string{"RS256"}))
		key, err := jwt.ParseRSAPublicKeyFromPEM([]byte(os.Getenv(t.HTTPJWTKeyEnv)))
		if err != nil {
			return nil, fmt.Errorf("public key in %s: %w", t.HTTPJWTKeyEnv, err)
		}
		keyFunc = func(*jwt.Token) (any, error) { return key, nil }
	}
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(raw, claims, keyFunc, opts...); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkHMAC verifies the body's HMAC-SHA256 signature when the flow
// requires one.
func checkHMAC(f *Flow, r *http.Request, body []byte) error {
	if f.Trigger.HTTPHMACEnv == "" {
		return nil
	}
	secret := os.Getenv(f.Trigger.HTTPHMACEnv)
	if secret == "" {
		return fmt.Errorf("no secret in %s", f.Trigger.HTTPHMACEnv)
	}
	got, err := hex.DecodeString(strings.TrimPrefix(r.Header.Get(f.Trigger.HTTPHMACHeader), "sha256="))
	if err != nil || len(got) == 0 {
		return fmt.Errorf("missing or malformed %s", f.Trigger.HTTPHMACHeader)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return fmt.Errorf("%s does not match the body", f.Trigger.HTTPHMACHeader)
	}
	return nil
}

// withClaims keeps verified JWT claims for requestVars.
func withClaims(r *http.Request, claims jwt.MapClaims) *http.Request {
	if claims == nil {
		return r
	}
	return r.WithContext(context.WithValue(r.Context(), claimsKey{}, map[string]any(claims)))
}

// withCORS answers preflight requests and sets CORS headers for the
// flow's allowed origins (github.com/rs/cors).
func withCORS(f *Flow, h http.Handler) http.Handler {
	if len(f.Trigger.HTTPCORSOrigins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: f.Trigger.HTTPCORSOrigins,
		AllowedMethods: f.Trigger.HTTPMethods,
		AllowedHeaders: append([]string{"Content-Type", "Authorization", f.Trigger.HTTPKeyHeader}, f.Trigger.HTTPCORSHeaders...),
		ExposedHeaders: []string{"Location", "Retry-After", "X-Sluice-Run"},
		MaxAge:         600,
	}).Handler(h)
}
