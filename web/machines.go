package web

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"

	"github.com/sluicehq/sluice/machines"
)

type machinesData struct {
	Machine, Key, In string
	Problem          string
	Entity           *machines.Entity
	History          []machines.Transition
	Timers           []timerRow
	List             []machines.Entity
	Listed           bool
}

type timerRow struct {
	machines.Timer
	Status string
}

func (s *Server) machinesPage(w http.ResponseWriter, r *http.Request, p *page) {
	q := r.URL.Query()
	d := machinesData{Machine: q.Get("machine"), Key: q.Get("key"), In: q.Get("in")}
	p.Title, p.Nav = "State machines", "machines"
	defer func() { p.Data = d; s.render(w, r, "machines", p) }()
	if d.Machine == "" {
		return
	}
	if s.opts.Machines == nil {
		d.Problem = "This engine has no state machine store."
		return
	}
	ctx := r.Context()
	st, err := s.opts.Machines(ctx)
	if errors.Is(err, fs.ErrNotExist) {
		d.Problem = "No state.transition step has run yet: there is no machine state."
		return
	}
	if err != nil {
		d.Problem = "Cannot open the machine store: " + err.Error()
		return
	}
	defer st.Close()
	if d.Key == "" {
		d.Listed = true
		if d.List, err = st.List(ctx, d.Machine, d.In, 200); err != nil {
			d.Problem = err.Error()
		}
		return
	}
	e, err := st.Get(ctx, d.Machine, d.Key)
	if errors.Is(err, machines.ErrNotFound) {
		d.Problem = fmt.Sprintf("Machine %q has no entity %q.", d.Machine, d.Key)
		return
	}
	if err != nil {
		d.Problem = err.Error()
		return
	}
	d.Entity = &e
	if d.History, err = st.History(ctx, d.Machine, d.Key); err != nil {
		d.Problem = err.Error()
		return
	}
	timers, fired, err := st.Timers(ctx, d.Machine, d.Key)
	if err != nil {
		d.Problem = err.Error()
		return
	}
	for i, t := range timers {
		status := "pending"
		switch {
		case fired[i]:
			status = "fired"
		case t.Version != e.Version:
			status = "dropped (the entity moved on)"
		}
		d.Timers = append(d.Timers, timerRow{t, status})
	}
}
