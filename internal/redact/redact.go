// Package redact hides credentials in strings Sluice logs or prints:
// broker and storage URLs carry passwords (s3://KEY:SECRET@host,
// kafka://user:password@host) and sometimes tokens in their query.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces a hidden value.
const Mask = "xxxxx"

// secretParams are substrings of query parameter names whose values are
// hidden: password, secret, token, key, signature, credential, auth.
var secretParams = []string{"pass", "secret", "token", "key", "signature", "credential", "auth"}

// URL returns raw with its password and the values of secret-looking query
// parameters replaced by Mask; the scheme, user name, hosts and other
// parameters stay readable. A string that does not parse as a URL still
// has anything between "//user:" and "@" masked. URL never fails and
// never returns the secret.
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" {
		return userinfo(raw)
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), Mask)
			changed = true
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			if secretParam(k) {
				for i := range vs {
					vs[i] = Mask
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if !changed {
		return raw
	}
	return u.String()
}

func secretParam(name string) bool {
	name = strings.ToLower(name)
	for _, s := range secretParams {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// userinfo masks "//user:secret@" in a string that is not a valid URL.
func userinfo(s string) string {
	i := strings.Index(s, "//")
	if i < 0 {
		return s
	}
	rest := s[i+2:]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return s
	}
	colon := strings.Index(rest[:at], ":")
	if colon < 0 {
		return s
	}
	return s[:i+2] + rest[:colon+1] + Mask + rest[at:]
}

// Error returns err's text with every occurrence of the URL raw (and of its
// password, should it appear alone) redacted, for errors from code that
// quotes the URL it was given.
func Error(err error, raw string) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	if raw == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, raw, URL(raw))
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = alone(msg, p)
			msg = alone(msg, url.PathEscape(p))
		}
	}
	return msg
}

// alone masks the occurrences of secret in msg that are not part of a
// longer word, so a short password does not mask every word it is in.
func alone(msg, secret string) string {
	re := regexp.MustCompile(`(^|[^\pL\pN])` + regexp.QuoteMeta(secret) + `($|[^\pL\pN])`)
	// Twice: adjacent occurrences share the character between them.
	for range 2 {
		msg = re.ReplaceAllString(msg, "${1}"+Mask+"${2}")
	}
	return msg
}
