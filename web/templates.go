package web

import (
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// parsePages parses each page template with the layout and the shared
// parts: one template set per page, so each defines its own "content".
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", n)
		if err != nil {
			return nil, fmt.Errorf("web: template %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

var funcs = template.FuncMap{
	"dur":     fmtDuration,
	"when":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clip":    clip,
	"pct":     func(part, whole int64) string { return pct(part, whole) },
	"rate":    func(r float64) string { return fmtRate(r) },
	"bytes":   fmtBytes,
	"status":  statusClass,
	"add":     func(a, b int) int { return a + b },
	"percent": func(part, whole time.Duration) string { return percentOf(part, whole) },
	"join":    strings.Join,
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}

func pct(part, whole int64) string {
	if whole <= 0 {
		return "–"
	}
	p := 100 * float64(part) / float64(whole)
	if p > 0 && p < 0.1 {
		return "<0.1%"
	}
	return fmt.Sprintf("%.1f%%", p)
}

func percentOf(part, whole time.Duration) string {
	if whole <= 0 {
		return "0"
	}
	return fmt.Sprintf("%.1f", math.Min(100, 100*float64(part)/float64(whole)))
}

func fmtRate(r float64) string {
	switch {
	case r <= 0:
		return "0/s"
	case r < 1:
		return fmt.Sprintf("%.2f/s", r)
	case r < 100:
		return fmt.Sprintf("%.1f/s", r)
	}
	return fmt.Sprintf("%.0f/s", r)
}

func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// statusClass is the CSS class of a run, step or health status.
func statusClass(s string) string {
	switch s {
	case "succeeded", "ok", "replayed":
		return "ok"
	case "dead_lettered", "failed", "failing":
		return "bad"
	case "accepted", "skipped", "duplicate", "filtered", "idle", "running":
		return "neutral"
	}
	return "warn"
}
