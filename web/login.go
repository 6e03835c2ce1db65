package web

import (
	"net/http"
	"net/url"
)

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if s.auth.open() {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	s.render(w, r, "login", &page{Title: "Log in", Data: loginData{Next: safeNext(r.URL.Query().Get("next"))}})
}

type loginData struct {
	Next, Problem string
}

// safeNext keeps a post-login redirect on the dashboard.
func safeNext(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || len(next) < 3 || next[:3] != "/ui" || (len(next) > 1 && next[1] == '/') {
		return "/ui/"
	}
	return next
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if s.auth.open() {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	if err := s.auth.origin.Check(r); err != nil {
		http.Error(w, "forbidden: cross-origin request", http.StatusForbidden)
		return
	}
	next := safeNext(r.PostFormValue("next"))
	if !s.auth.guesses.mayGuess(r) {
		s.log.Warn("dashboard login refused: too many wrong tokens", "remote", r.RemoteAddr)
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		s.render(w, r, "login", &page{Title: "Log in", Data: loginData{Next: next, Problem: "Too many wrong tokens from here: wait a moment."}})
		return
	}
	if !s.auth.guess(r, r.PostFormValue("token")) {
		s.log.Warn("dashboard login refused: wrong token", "remote", r.RemoteAddr)
		w.WriteHeader(http.StatusUnauthorized)
		s.render(w, r, "login", &page{Title: "Log in", Data: loginData{Next: next, Problem: "That is not the admin token."}})
		return
	}
	s.auth.setSession(w, r, s.auth.newSession())
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *page) {
	s.auth.clearSession(w, r)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
