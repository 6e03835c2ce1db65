package main

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/sluicehq/sluice/storage"
)

// safe returns s as the CLI prints an untrusted string (a message id, an
// object key, an error a hostile input caused): control characters (C0,
// DEL, C1 such as U+0085, and newlines and tabs, which would break the
// table), bidirectional formatting characters (U+202E makes "gpj.exe"
// print as "exe.jpg"), other invisible format characters and invalid
// UTF-8 are written as Go escapes (\x1b, \u202e), so what is printed is
// what is stored and a terminal never interprets it. JSON output (--json)
// is data and is not changed.
func safe(s string) string { return escape(s, false) }

// safeLines is safe but keeps newlines, for multi-line text such as an
// error shown on its own.
func safeLines(s string) string { return escape(s, true) }

func escape(s string, keepNewlines bool) string {
	clean := true
	for _, r := range s {
		if needsEscape(r, keepNewlines) {
			clean = false
			break
		}
	}
	if clean && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case needsEscape(r, keepNewlines):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

func needsEscape(r rune, keepNewlines bool) bool {
	if r == '\n' && keepNewlines {
		return false
	}
	return r < 0x20 || r >= 0x7f && r <= 0x9f || storage.IsBidiControl(r) ||
		r == 0x2028 || r == 0x2029 || unicode.Is(unicode.Cf, r) && r != 0x200d // keep the emoji joiner
}

// clip is safe(s) cut to at most n runes, "..." marking a cut.
func clip(s string, n int) string {
	s = safe(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}
