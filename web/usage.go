package web

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/sluicehq/sluice/state"
)

type usageData struct {
	Days   int
	Rows   []state.Usage
	Charts []usageChart
}

// usageChart is one flow's calls per day as SVG bars (errors in red over
// the calls), laid out here so the template only draws.
type usageChart struct {
	Flow          string
	Width, Height int
	Max           int64
	Bars          []usageBar
	Summary       string // the chart in words, for screen readers
}

type usageBar struct {
	X, W             int
	CallsY, CallsH   int
	ErrorsY, ErrorsH int
	Label, Title     string
	ShowLabel        bool
}

const (
	chartHeight = 140
	chartBase   = 120 // the bars' baseline; day labels below it
	barWidth    = 18
	barGap      = 6
)

func usageCharts(rows []state.Usage, days int, now time.Time) []usageChart {
	byFlow := map[string]map[string]state.Usage{}
	for _, u := range rows {
		if byFlow[u.Flow] == nil {
			byFlow[u.Flow] = map[string]state.Usage{}
		}
		byFlow[u.Flow][u.Day] = u
	}
	names := make([]string, 0, len(byFlow))
	for n := range byFlow {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []usageChart
	for _, name := range names {
		c := usageChart{Flow: name, Height: chartHeight}
		var total, errs int64
		for i := days - 1; i >= 0; i-- {
			u := byFlow[name][now.AddDate(0, 0, -i).UTC().Format("2006-01-02")]
			c.Max = max(c.Max, u.Calls)
			total, errs = total+u.Calls, errs+u.Errors
		}
		scale := func(n int64) int {
			if c.Max == 0 {
				return 0
			}
			return int(float64(n) / float64(c.Max) * float64(chartBase-10))
		}
		for i := days - 1; i >= 0; i-- {
			day := now.AddDate(0, 0, -i).UTC().Format("2006-01-02")
			u := byFlow[name][day]
			x := (days - 1 - i) * (barWidth + barGap)
			ch, eh := scale(u.Calls), scale(u.Errors)
			if u.Calls > 0 {
				ch = max(ch, 2) // a day with calls is never an empty bar
			}
			if u.Errors > 0 {
				eh = max(eh, 2)
			}
			c.Bars = append(c.Bars, usageBar{
				X: x, W: barWidth, CallsY: chartBase - ch, CallsH: ch, ErrorsY: chartBase - eh, ErrorsH: eh,
				Label: day[5:], ShowLabel: i%7 == 0 || i == days-1,
				Title: fmt.Sprintf("%s: %d calls, %d errors, %.1fs compute", day, u.Calls, u.Errors, u.ComputeSeconds),
			})
		}
		c.Width = days*(barWidth+barGap) + 24 // room for the last day's label
		c.Summary = fmt.Sprintf("%s: %d calls and %d errors over the last %d days, at most %d a day", name, total, errs, days, c.Max)
		out = append(out, c)
	}
	return out
}

func (s *Server) usagePage(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	days := 14
	if n, err := strconv.Atoi(r.URL.Query().Get("days")); err == nil && n > 0 && n <= 90 {
		days = n
	}
	now := time.Now().UTC()
	since := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -(days - 1))
	rows, err := s.opts.State.Usage(r.Context(), state.UsageFilter{Since: since})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	p.Title, p.Nav, p.Data = "Usage", "usage", usageData{Days: days, Rows: rows, Charts: usageCharts(rows, days, now)}
	s.render(w, r, "usage", p)
}
