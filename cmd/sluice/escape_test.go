package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"photo.jpg":              "photo.jpg",
		"日本/写真.jpg":              "日本/写真.jpg",
		"invoice\u202egpj.exe":   `invoice\u202egpj.exe`,
		"next\u0085line":         `next\x85line`,
		"\x1b[31mred\x1b[0m":     `\x1b[31mred\x1b[0m`,
		"a\tb\nc":                `a\x09b\x0ac`,
		"bad\xffutf8":            `bad\xffutf8`,
		`back\slash` + "\u200b":  `back\\slash\u200b`,
		"family 👨\u200d👩\u200d👧": "family 👨\u200d👩\u200d👧",
	} {
		assert.Equal(t, want, safe(in), "%q", in)
	}
	assert.Equal(t, "line 1\nline \\x1b2", safeLines("line 1\nline \x1b2"))
	assert.Equal(t, "ab\\x0...", clip("ab\ncdef", 8))
	assert.Equal(t, "日本語", clip("日本語", 3))
}
