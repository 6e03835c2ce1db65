package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Access control. With an admin token every page and API call needs
// credentials: the session cookie the login form sets, or the token as a
// bearer header. Without one (a loopback-only listener) reading is open,
// but actions still need the session's CSRF token: a page on another
// site must not make the browser replay dead letters on localhost.
//
// The cookie's path is /ui, so the routes of HTTP-triggered flows on the
// same listener never receive it. A session cookie is "<issued
// unix>.<random>.<mac>", the mac an HMAC of
// the first two parts under a key derived from the admin token (a random
// key without one), so the cookie never carries the token, sessions end
// when the token changes, and no session table is kept. The CSRF token of a
// session is another HMAC of it.

const (
	sessionCookie = "sluice_session"
	sessionTTL    = 12 * time.Hour
	csrfField     = "csrf"
	csrfHeader    = "X-CSRF-Token"
)

type access struct {
	token   []byte // the admin token; nil: open
	key     []byte // HMAC key of sessions and CSRF tokens
	origin  *http.CrossOriginProtection
	now     func() time.Time
	guesses guesses // wrong tokens, by client address
}

func newAccess(token string) *access {
	a := &access{origin: http.NewCrossOriginProtection(), now: time.Now, guesses: guesses{by: map[string]*rate.Limiter{}}}
	if token != "" {
		a.token = []byte(token)
		m := hmac.New(sha256.New, a.token)
		m.Write([]byte("sluice dashboard sessions v1"))
		a.key = m.Sum(nil)
	} else {
		a.key = make([]byte, 32)
		_, _ = rand.Read(a.key)
	}
	return a
}

// open reports whether reading needs no credentials.
func (a *access) open() bool { return a.token == nil }

func (a *access) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newSession returns a fresh session cookie value.
func (a *access) newSession() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	payload := strconv.FormatInt(a.now().Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + a.mac("session", payload)
}

// session returns the request's valid session, or "".
func (a *access) session(r *http.Request) string {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 {
		return ""
	}
	payload, sum := c.Value[:i], c.Value[i+1:]
	if !hmac.Equal([]byte(sum), []byte(a.mac("session", payload))) {
		return ""
	}
	issued, err := strconv.ParseInt(payload[:max(strings.IndexByte(payload, '.'), 0)], 10, 64)
	if err != nil || a.now().Sub(time.Unix(issued, 0)) > sessionTTL {
		return ""
	}
	return c.Value
}

// csrf is the CSRF token of a session.
func (a *access) csrf(session string) string {
	if session == "" {
		return ""
	}
	return a.mac("csrf", session)
}

// bearer reports whether the request carries the admin token as a bearer
// header.
func (a *access) bearer(r *http.Request) bool {
	if a.token == nil {
		return false
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && a.guess(r, tok)
}

// guess checks a token a client gave (login form or bearer header): a
// client that guessed wrong too often (guessBurst at once, then one a
// second) is refused without its token being looked at, until it may
// guess again.
func (a *access) guess(r *http.Request, token string) bool {
	if !a.guesses.mayGuess(r) {
		return false
	}
	if a.tokenEqual(token) {
		return true
	}
	a.guesses.wrong(r)
	return false
}

// Wrong-token guesses allowed per client address: guessBurst at once,
// then guessRate a second; guessClients bounds the clients remembered.
const (
	guessBurst   = 30
	guessRate    = 1
	guessClients = 10000
)

// guesses limits wrong admin-token guesses per client address.
type guesses struct {
	mu sync.Mutex
	by map[string]*rate.Limiter
}

func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (g *guesses) mayGuess(r *http.Request) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.by[clientOf(r)]
	return l == nil || l.Tokens() >= 1
}

func (g *guesses) wrong(r *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c := clientOf(r)
	l := g.by[c]
	if l == nil {
		if len(g.by) >= guessClients {
			clear(g.by) // bounded memory; a flood of addresses starts over
		}
		l = rate.NewLimiter(guessRate, guessBurst)
		g.by[c] = l
	}
	l.Allow()
}

// tokenEqual compares a given token with the admin token in constant time
// (over their hashes, so the length does not leak either).
func (a *access) tokenEqual(given string) bool {
	g, t := sha256.Sum256([]byte(given)), sha256.Sum256(a.token)
	return subtle.ConstantTimeCompare(g[:], t[:]) == 1 && a.token != nil
}

func (a *access) setSession(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: "/ui", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionTTL / time.Second),
	})
}

func (a *access) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui", HttpOnly: true, Secure: r.TLS != nil,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

// who is what a request proved: a session (cookie) or the token itself
// (bearer); both empty for an anonymous request.
type who struct {
	session string
	bearer  bool
}

func (w who) authenticated() bool { return w.session != "" || w.bearer }

// identify reads the request's credentials. On an open dashboard a page
// request without a session gets one, so its forms carry a CSRF token.
func (a *access) identify(w http.ResponseWriter, r *http.Request) who {
	id := who{session: a.session(r), bearer: a.bearer(r)}
	if id.session == "" && !id.bearer && a.open() && r.Method == http.MethodGet {
		id.session = a.newSession()
		a.setSession(w, r, id.session)
	}
	return id
}

// allowed reports whether the request may go on, having answered it when
// not. Reads need credentials unless the dashboard is open; actions (any
// method but GET and HEAD) also need a same-origin request and, with a
// session cookie, its CSRF token in the form or the X-CSRF-Token header.
func (a *access) allowed(w http.ResponseWriter, r *http.Request, id who, api bool) bool {
	if !a.open() && !id.authenticated() {
		if api || r.Method != http.MethodGet {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			http.Error(w, "unauthorized: log in at /ui/login or send the admin token as Authorization: Bearer", http.StatusUnauthorized)
			return false
		}
		http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return false
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	if err := a.origin.Check(r); err != nil {
		http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
		return false
	}
	if id.bearer {
		return true // a header no other site can make a browser send
	}
	if api && a.open() && isJSON(r) {
		return true // a JSON body needs a CORS preflight cross-site, which is never granted
	}
	given := r.Header.Get(csrfHeader)
	if given == "" {
		given = r.PostFormValue(csrfField)
	}
	if id.session == "" || !hmac.Equal([]byte(given), []byte(a.csrf(id.session))) {
		http.Error(w, "forbidden: missing or wrong CSRF token (reload the page)", http.StatusForbidden)
		return false
	}
	return true
}

func isJSON(r *http.Request) bool {
	t, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && t == "application/json"
}
