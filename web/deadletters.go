package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/state"
)

// selection is which dead letters an action or a listing is about: named
// ids, or one group (flow, step and exact error text), or a filter.
type selection struct {
	IDs   []string
	Flow  string
	Step  string
	Error string
	Exact bool // Error is a group's whole error, not a substring
}

func selectionOf(v url.Values) selection {
	sel := selection{IDs: v["id"], Flow: v.Get("flow"), Step: v.Get("step"), Error: v.Get("error"), Exact: v.Get("exact") == "1"}
	return sel
}

func (sel selection) empty() bool {
	return len(sel.IDs) == 0 && sel.Flow == "" && sel.Step == "" && sel.Error == ""
}

// query is the selection as a query string, for links back.
func (sel selection) query() string {
	v := url.Values{}
	for _, id := range sel.IDs {
		v.Add("id", id)
	}
	for k, s := range map[string]string{"flow": sel.Flow, "step": sel.Step, "error": sel.Error} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if sel.Exact {
		v.Set("exact", "1")
	}
	return v.Encode()
}

// ids resolves the selection to the ids of its pending dead letters
// (every one, replayed too, with all).
func (s *Server) ids(ctx context.Context, sel selection, all bool) ([]string, error) {
	dls, err := s.opts.State.DeadLetters(ctx, state.DeadLetterFilter{IDs: sel.IDs, Flow: sel.Flow, Step: sel.Step, Error: sel.Error,
		Replayed: all, Limit: 100000})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, dl := range dls {
		if !sel.Exact || dl.Error == sel.Error {
			ids = append(ids, dl.ID)
		}
	}
	return ids, nil
}

type dlqData struct {
	Groups   []state.DeadLetterGroup
	Sel      selection
	SelQuery string
	Letters  []letterRow // the dead letters of the selection, when one is made
	Replayed bool        // the listing includes replayed ones
	Purged   string      // what the last purge did
}

type letterRow struct {
	state.DeadLetter
	Preview string
}

func (s *Server) dlqPage(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	q := r.URL.Query()
	d := dlqData{Sel: selectionOf(q), Replayed: q.Get("replayed") == "1", Purged: q.Get("purged")}
	d.SelQuery = d.Sel.query()
	ctx := r.Context()
	groups, err := s.opts.State.DeadLetterGroups(ctx, state.DeadLetterFilter{})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	d.Groups = groups
	if !d.Sel.empty() || d.Replayed {
		dls, err := s.opts.State.DeadLetters(ctx, state.DeadLetterFilter{IDs: d.Sel.IDs, Flow: d.Sel.Flow, Step: d.Sel.Step,
			Error: d.Sel.Error, Replayed: d.Replayed, Limit: 500})
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, dl := range dls {
			if !d.Sel.Exact || dl.Error == d.Sel.Error {
				d.Letters = append(d.Letters, letterRow{DeadLetter: dl, Preview: preview(dl.Payload, 80)})
			}
		}
	}
	p.Title, p.Nav, p.Data = "Dead letters", "dlq", d
	s.render(w, r, "dlq", p)
}

func preview(b []byte, n int) string {
	if !utf8.Valid(b) {
		return strconv.Itoa(len(b)) + " bytes (binary)"
	}
	return clip(string(b), n)
}

type letterDetail struct {
	Letter    state.DeadLetter
	Payload   string // indented JSON, the text, or a note for binary
	Binary    bool
	Run       string // the id of the run that dead-lettered it, when recorded
	ReplayRun string // the id of the run its replay made, when recorded
}

func (s *Server) deadLetterPage(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	id := r.PathValue("id")
	ctx := r.Context()
	dls, err := s.opts.State.DeadLetters(ctx, state.DeadLetterFilter{IDs: []string{id}, Replayed: true, Limit: 1})
	dl, ok := one(s, w, r, p, dls, err, "No dead letter "+id+" (it may have been purged).")
	if !ok {
		return
	}
	d := letterDetail{Letter: dl}
	d.Payload, d.Binary = payloadText(d.Letter.Payload)
	if runs, err := s.opts.State.Runs(ctx, state.Filter{Flow: d.Letter.Flow, Input: d.Letter.SourceID, Status: state.StatusDeadLettered, Limit: 1}); err == nil && len(runs) > 0 {
		d.Run = runs[0].ID
	}
	if d.Letter.ReplayID != "" {
		if runs, err := s.opts.State.Runs(ctx, state.Filter{Input: d.Letter.ReplayID, Limit: 5}); err == nil {
			for _, rn := range runs {
				if rn.Status != state.StatusDuplicate {
					d.ReplayRun = rn.ID
				}
			}
		}
	}
	p.Title, p.Nav, p.Data = "Dead letter "+id, "dlq", d
	s.render(w, r, "deadletter", p)
}

// payloadText shows a payload: indented when it is JSON, as text when it
// is UTF-8, else as a note.
func payloadText(b []byte) (string, bool) {
	if json.Valid(b) {
		var v any
		if json.Unmarshal(b, &v) == nil {
			if out, err := json.MarshalIndent(v, "", "  "); err == nil {
				return string(out), false
			}
		}
	}
	if utf8.Valid(b) {
		return string(b), false
	}
	return strconv.Itoa(len(b)) + " bytes of binary data", true
}

// A job is a replay in progress, shown on its own page.
type job struct {
	ID      string
	Started time.Time
	Sel     selection

	mu       sync.Mutex
	done     int
	total    int
	finished bool
	err      error
	ids      []string
}

type jobs struct {
	mu   sync.Mutex
	byID map[string]*job
	list []*job // oldest first, the last 50 kept
}

func (j *jobs) add(jb *job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.byID[jb.ID] = jb
	j.list = append(j.list, jb)
	if len(j.list) > 50 {
		delete(j.byID, j.list[0].ID)
		j.list = j.list[1:]
	}
}

func (j *jobs) get(id string) *job {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.byID[id]
}

// jobView is a job's state at one moment.
type jobView struct {
	ID, Error     string
	Done, Total   int
	Finished      bool
	Started       time.Time
	Letters       []string // the replayed dead letters' ids
	SelectionBack string
}

func (jb *job) view() jobView {
	jb.mu.Lock()
	defer jb.mu.Unlock()
	v := jobView{ID: jb.ID, Done: jb.done, Total: jb.total, Finished: jb.finished, Started: jb.Started,
		Letters: append([]string(nil), jb.ids[:min(jb.done, len(jb.ids))]...), SelectionBack: jb.Sel.query()}
	if jb.err != nil {
		v.Error = jb.err.Error()
	}
	return v
}

// startReplay replays the selection's pending dead letters in the
// background and returns the job.
func (s *Server) startReplay(ctx context.Context, sel selection) (*job, error) {
	if sel.empty() {
		return nil, errors.New("select dead letters to replay: by id, or a flow, step or error")
	}
	ids, err := s.ids(ctx, sel, false)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	jb := &job{ID: hex.EncodeToString(b), Started: time.Now(), Sel: sel, total: len(ids), ids: ids}
	s.jobs.add(jb)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := s.replayIDs(s.ctx, jb, ids)
		jb.mu.Lock()
		jb.finished, jb.err = true, err
		jb.mu.Unlock()
		if err != nil {
			s.log.Warn("dead letter replay stopped", "job", jb.ID, "error", err)
		} else {
			s.log.Info("dead letters replayed", "job", jb.ID, "count", len(ids))
		}
	}()
	return jb, nil
}

// replayChunk bounds the ids of one replay call (one SQL IN list).
const replayChunk = 200

func (s *Server) replayIDs(ctx context.Context, jb *job, ids []string) error {
	for start := 0; start < len(ids); start += replayChunk {
		chunk := ids[start:min(start+replayChunk, len(ids))]
		_, err := s.opts.Engine.ReplayDeadLetters(ctx, state.DeadLetterFilter{IDs: chunk, Limit: len(chunk)}, func(done, _ int) {
			jb.mu.Lock()
			jb.done = start + done
			jb.mu.Unlock()
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	_ = r.ParseForm()
	jb, err := s.startReplay(r.Context(), selectionOf(r.PostForm))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, "/ui/jobs/"+jb.ID, http.StatusSeeOther)
}

func (s *Server) jobPage(w http.ResponseWriter, r *http.Request, p *page) {
	jb := s.jobs.get(r.PathValue("id"))
	if jb == nil {
		s.notFound(w, r, p, "No replay "+r.PathValue("id")+" (only the last 50 of this process are kept).")
		return
	}
	p.Title, p.Nav, p.Data = "Replay", "dlq", jb.view()
	s.render(w, r, "job", p)
}

func (s *Server) purge(w http.ResponseWriter, r *http.Request, p *page) {
	if s.noState(w, r, p) {
		return
	}
	_ = r.ParseForm()
	sel := selectionOf(r.PostForm)
	n, err := s.purgeSelection(r.Context(), sel)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, "/ui/dlq?purged="+strconv.FormatInt(n, 10), http.StatusSeeOther)
}

// purgeSelection deletes the selection's dead letters, replayed ones
// included.
func (s *Server) purgeSelection(ctx context.Context, sel selection) (int64, error) {
	if sel.empty() {
		return 0, errors.New("select dead letters to purge: by id, or a flow, step or error")
	}
	ids, err := s.ids(ctx, sel, true)
	if err != nil {
		return 0, err
	}
	var n int64
	for start := 0; start < len(ids); start += replayChunk {
		chunk := ids[start:min(start+replayChunk, len(ids))]
		m, err := s.opts.State.PurgeDeadLetters(ctx, state.DeadLetterFilter{IDs: chunk, Replayed: true})
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
