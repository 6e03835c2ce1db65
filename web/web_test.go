package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"net/http/httptest"

	"github.com/sluicehq/sluice/brokers"
	"github.com/sluicehq/sluice/flows"
	"github.com/sluicehq/sluice/machines"
	"github.com/sluicehq/sluice/nodes"
	_ "github.com/sluicehq/sluice/nodes/all"
	"github.com/sluicehq/sluice/state"
	"github.com/sluicehq/sluice/storage"
	"github.com/sluicehq/sluice/web"
)

// enrichFlow fails (permanently: the object is missing) for customers
// without a file in the configs bucket, so a test can fix the cause by
// writing the file and replay the dead letter.
const enrichFlow = `name: enrich
description: loads the customer's file, routes large orders to review
on:
  topic: orders
retry: {max_attempts: 1}
steps:
  - id: load
    node: storage.get
    with:
      bucket: configs
      key: 'customers/{{ payload.customer }}.json'
  - id: route
    node: switch
    with:
      cases:
        - when: payload.amount > 100
          branch: large
        - when: "true"
          topic: done
branches:
  large:
    - id: review
      node: publish
      with: {topics: [review]}
`

const orderFlow = `name: lifecycle
on:
  topic: order-events
steps:
  - id: order
    node: state.transition
    with:
      machine: order
      key: payload.order_id
      event: payload.type
      transitions:
        - {event: create, from: [new], to: created}
        - {event: pay, from: [created], to: paid}
`

// relayFlow keeps run records of failures only.
const relayFlow = `name: relay
on:
  topic: relay-in
record: failures
steps:
  - node: transform
    with: {set: {seen: true}}
`

type env struct {
	t      *testing.T
	dir    string
	broker brokers.Broker
	store  *storage.Store
	state  *state.DB
	engine *flows.Engine
	srv    *httptest.Server
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs the three flows on a real engine (SQLite queue and state, a
// folder bucket) and serves the dashboard with token (none: open).
func start(t *testing.T, token string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, dir: dir}
	var err error
	e.broker, err = brokers.Open(t.Context(), "sqlite://"+filepath.Join(dir, "queue.db")+"?poll=10ms", nil)
	require.NoError(t, err)
	e.store, err = storage.Open(t.Context(), "fs://"+filepath.Join(dir, "buckets"))
	require.NoError(t, err)
	e.state, err = state.Open(filepath.Join(dir, "state.db"))
	require.NoError(t, err)
	var files []string
	for name, y := range map[string]string{"enrich.yaml": enrichFlow, "lifecycle.yaml": orderFlow, "relay.yaml": relayFlow} {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(y), 0o644))
		files = append(files, p)
	}
	fl, err := flows.Loader{Deps: nodes.Deps{Store: e.store, Logger: quiet(), StateDir: dir}}.Load(files...)
	require.NoError(t, err)
	e.engine, err = flows.NewEngine(flows.Options{Broker: e.broker, Store: e.store, State: e.state, Logger: quiet(),
		Metrics: flows.NewMetrics(prometheus.NewRegistry()), DrainTimeout: 5 * time.Second}, fl)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.engine.Run(ctx) }()
	select {
	case <-e.engine.Ready():
	case err := <-done:
		t.Fatalf("engine stopped: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("engine not ready in 15s")
	}
	srv, err := web.New(web.Options{Engine: e.engine, State: e.state, Store: e.store, AdminToken: token, Logger: quiet(),
		Machines: func(ctx context.Context) (machines.Store, error) {
			p := filepath.Join(dir, "machines.db")
			if _, err := os.Stat(p); err != nil {
				return nil, err
			}
			return machines.OpenSQLite(p)
		}})
	require.NoError(t, err)
	e.srv = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.srv.Close()
		_ = srv.Close()
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Error("engine did not stop in 20s")
		}
		_ = e.state.Close()
		_ = e.broker.Close()
		_ = e.store.Close()
	})
	return e
}

func (e *env) publish(topic, payload string) string {
	e.t.Helper()
	m := message.NewMessage(watermill.NewUUID(), []byte(payload))
	require.NoError(e.t, e.broker.Publisher().Publish(topic, m))
	return m.UUID
}

func (e *env) putCustomer(name string) {
	e.t.Helper()
	require.NoError(e.t, e.store.EnsureBucket(e.t.Context(), "configs"))
	_, err := e.store.Put(e.t.Context(), "configs", "customers/"+name+".json", strings.NewReader(`{"tier":"gold"}`), storage.PutOptions{})
	require.NoError(e.t, err)
}

// runs waits for n runs of flow with status and returns them.
func (e *env) runs(flow, status string, n int) []state.Run {
	e.t.Helper()
	var runs []state.Run
	require.Eventually(e.t, func() bool {
		if err := e.state.Flush(e.t.Context()); err != nil {
			return false
		}
		var err error
		runs, err = e.state.Runs(e.t.Context(), state.Filter{Flow: flow, Status: status})
		return err == nil && len(runs) >= n
	}, 20*time.Second, 20*time.Millisecond, "want %d %s runs of %s", n, status, flow)
	return runs
}

// client is a browser-like client: cookies kept, redirects not followed.
func (e *env) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *env) get(c *http.Client, path string, header ...string) (int, string, http.Header) {
	e.t.Helper()
	return e.do(c, http.MethodGet, path, nil, header...)
}

func (e *env) post(c *http.Client, path string, form url.Values, header ...string) (int, string, http.Header) {
	e.t.Helper()
	return e.do(c, http.MethodPost, path, form, append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
}

// do sends a request (form, when not nil, as its body) with header's
// name, value pairs and returns the status, body and headers.
func (e *env) do(c *http.Client, method, path string, form url.Values, header ...string) (int, string, http.Header) {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, body)
	require.NoError(e.t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token a page's forms carry.
func csrf(t *testing.T, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	require.NotNil(t, m, "no CSRF token in the page")
	return m[1]
}

// failingRun publishes an order for a customer without a file and waits
// for its dead-lettered run.
func (e *env) failingRun() state.Run {
	e.t.Helper()
	e.publish("orders", `{"customer":"acme","amount":250}`)
	return e.runs("enrich", state.StatusDeadLettered, 1)[0]
}

const token = "s3cret-admin-token-for-tests"

// TestAccessNeedsTheToken: with an admin token, no page and no API call
// reads anything without credentials; the bearer header and the login
// cookie both work; the cookie is HttpOnly, SameSite=Strict and is not
// the token.
func TestAccessNeedsTheToken(t *testing.T) {
	e := start(t, token)
	run := e.failingRun()
	dls, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	pages := []string{"/ui/", "/ui/flows/live", "/ui/flows/enrich", "/ui/flows/enrich/graph", "/ui/runs", "/ui/runs?flow=enrich",
		"/ui/runs/" + run.ID, "/ui/dlq", "/ui/dlq/" + dls[0].ID, "/ui/usage", "/ui/machines?machine=order&key=o-1", "/ui/jobs/x"}
	apis := []string{"/ui/api/flows", "/ui/api/runs", "/ui/api/runs/" + run.ID, "/ui/api/deadletters", "/ui/api/deadletters?group=1",
		"/ui/api/deadletters/" + dls[0].ID}
	anon := e.client()
	for _, p := range pages {
		status, body, h := e.get(anon, p)
		assert.Equal(t, http.StatusSeeOther, status, p)
		assert.True(t, strings.HasPrefix(h.Get("Location"), "/ui/login?next="), p)
		assert.NotContains(t, body, "customers/acme", p)
		assert.NotContains(t, body, "<table", p)
		// A wrong bearer token is no better.
		status, body, _ = e.get(anon, p, "Authorization", "Bearer wrong")
		assert.Equal(t, http.StatusSeeOther, status, p)
		assert.NotContains(t, body, "customers/acme", p)
	}
	for _, p := range apis {
		status, body, h := e.get(anon, p)
		assert.Equal(t, http.StatusUnauthorized, status, p)
		assert.Contains(t, h.Get("WWW-Authenticate"), "Bearer", p)
		assert.NotContains(t, body, "enrich", p)
		status, _, _ = e.get(anon, p, "Authorization", "Bearer "+token+"x")
		assert.Equal(t, http.StatusUnauthorized, status, p)
		status, body, _ = e.get(anon, p, "Authorization", "Bearer "+token)
		assert.Equal(t, http.StatusOK, status, p)
		assert.Contains(t, body, "enrich", p)
	}
	// Actions without credentials: refused, nothing replayed or purged.
	for _, p := range []string{"/ui/dlq/replay", "/ui/dlq/purge"} {
		status, _, _ := e.post(anon, p, url.Values{"id": {dls[0].ID}})
		assert.Equal(t, http.StatusUnauthorized, status, p)
	}
	status, _, _ := e.post(anon, "/ui/api/deadletters/purge", url.Values{}, "Content-Type", "application/json")
	assert.Equal(t, http.StatusUnauthorized, status)
	left, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
	require.NoError(t, err)
	assert.Len(t, left, 1, "an unauthenticated action changed the dead letters")

	// Static assets need nothing.
	status, body, _ := e.get(anon, "/ui/static/htmx.min.js")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "htmx")

	// The login form: a wrong token is refused, the right one sets the cookie.
	status, body, _ = e.get(anon, "/ui/login?next=/ui/runs")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `name="token"`)
	status, _, h := e.post(anon, "/ui/login", url.Values{"token": {"nope"}, "next": {"/ui/runs"}})
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Empty(t, h.Values("Set-Cookie"))
	browser := e.client()
	status, _, h = e.post(browser, "/ui/login", url.Values{"token": {token}, "next": {"/ui/runs"}})
	require.Equal(t, http.StatusSeeOther, status)
	assert.Equal(t, "/ui/runs", h.Get("Location"))
	cookie := h.Get("Set-Cookie")
	assert.Contains(t, cookie, "HttpOnly")
	assert.Contains(t, cookie, "SameSite=Strict")
	assert.Contains(t, cookie, "Path=/ui", "HTTP flows on the listener never see it")
	assert.NotContains(t, cookie, token)
	for _, p := range pages[:len(pages)-1] {
		status, _, _ := e.get(browser, p)
		assert.Equal(t, http.StatusOK, status, p)
	}
	status, body, _ = e.get(browser, "/ui/runs/"+run.ID)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "customers/acme.json")

	// An open redirect after login is refused.
	status, _, h = e.post(e.client(), "/ui/login", url.Values{"token": {token}, "next": {"//evil.example/ui"}})
	require.Equal(t, http.StatusSeeOther, status)
	assert.Equal(t, "/ui/", h.Get("Location"))

	// A forged cookie (its mac changed) is no session.
	forged := e.client()
	u, _ := url.Parse(e.srv.URL + "/ui/")
	cs := browser.Jar.Cookies(u)
	require.Len(t, cs, 1)
	forgedValue := cs[0].Value[:len(cs[0].Value)-2] + "xx"
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: cs[0].Name, Value: forgedValue}})
	status, _, _ = e.get(forged, "/ui/runs")
	assert.Equal(t, http.StatusSeeOther, status)

	// A session from another token (another server key) is no session.
	other := start(t, "another-token")
	status, _, _ = e.get(browser, "/ui/runs")
	require.Equal(t, http.StatusOK, status)
	otherClient := other.client()
	ou, _ := url.Parse(other.srv.URL + "/ui/")
	otherClient.Jar.SetCookies(ou, []*http.Cookie{{Name: cs[0].Name, Value: cs[0].Value}})
	status, _, _ = other.get(otherClient, "/ui/runs")
	assert.Equal(t, http.StatusSeeOther, status)

	// Logging out needs the CSRF token too.
	_, page, _ := e.get(browser, "/ui/runs")
	status, _, _ = e.post(browser, "/ui/logout", url.Values{})
	assert.Equal(t, http.StatusForbidden, status)
	status, _, h = e.post(browser, "/ui/logout", url.Values{"csrf": {csrf(t, page)}})
	assert.Equal(t, http.StatusSeeOther, status)
	assert.Contains(t, h.Get("Set-Cookie"), "Max-Age=0")
}

// TestActionsNeedCSRFAndSameOrigin: a logged-in browser's POST is
// refused without the session's CSRF token, with another session's
// token, and from another origin; the bearer header needs no CSRF token.
func TestActionsNeedCSRFAndSameOrigin(t *testing.T) {
	e := start(t, token)
	e.failingRun()
	dls, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	login := func() (*http.Client, string) {
		c := e.client()
		status, _, _ := e.post(c, "/ui/login", url.Values{"token": {token}})
		require.Equal(t, http.StatusSeeOther, status)
		status, body, _ := e.get(c, "/ui/dlq/"+dls[0].ID)
		require.Equal(t, http.StatusOK, status)
		return c, csrf(t, body)
	}
	a, tokA := login()
	_, tokB := login()
	require.NotEqual(t, tokA, tokB, "CSRF tokens are per session")
	form := func(tok string) url.Values { return url.Values{"id": {dls[0].ID}, "csrf": {tok}} }

	status, _, _ := e.post(a, "/ui/dlq/purge", url.Values{"id": {dls[0].ID}})
	assert.Equal(t, http.StatusForbidden, status, "no CSRF token")
	status, _, _ = e.post(a, "/ui/dlq/purge", form(tokB))
	assert.Equal(t, http.StatusForbidden, status, "another session's token")
	status, _, _ = e.post(a, "/ui/dlq/purge", form(tokA), "Origin", "https://evil.example")
	assert.Equal(t, http.StatusForbidden, status, "cross-origin")
	status, _, _ = e.post(a, "/ui/dlq/purge", form(tokA), "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, http.StatusForbidden, status, "cross-site fetch")
	left, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, left, 1, "a refused action purged")

	// The same purge with the token, the header form of it, same origin.
	status, _, h := e.post(a, "/ui/dlq/purge", url.Values{"id": {dls[0].ID}}, "X-CSRF-Token", tokA, "Origin", e.srv.URL)
	require.Equal(t, http.StatusSeeOther, status)
	assert.Equal(t, "/ui/dlq?purged=1", h.Get("Location"))
	left, err = e.state.DeadLetters(t.Context(), state.DeadLetterFilter{Replayed: true})
	require.NoError(t, err)
	assert.Empty(t, left)

	// The API with the bearer token.
	e.publish("orders", `{"customer":"globex","amount":5}`)
	require.Eventually(t, func() bool {
		dls, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
		return err == nil && len(dls) == 1
	}, 20*time.Second, 20*time.Millisecond)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/ui/api/deadletters/purge", strings.NewReader(`{"flow":"enrich"}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"purged":1}`, string(body))

	// Replay through the API: 202 with the job, then the dead letter is
	// replayed; a body that is not a selection is a 400 naming the shape.
	e.publish("orders", `{"customer":"hooli","amount":5}`)
	var hooli string
	require.Eventually(t, func() bool {
		dls, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
		if err != nil || len(dls) != 1 {
			return false
		}
		hooli = dls[0].ID
		return true
	}, 20*time.Second, 20*time.Millisecond)
	apiPost := func(body string) (int, string) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/ui/api/deadletters/replay", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	status, text := apiPost(`[1, 2]`)
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, text, `want JSON {\"ids\": [...]}`)
	status, text = apiPost(`{}`)
	assert.Equal(t, http.StatusBadRequest, status, "an empty selection replays nothing")
	assert.Contains(t, text, "select dead letters to replay")
	status, text = apiPost(`{"flow":"enrich"}`)
	require.Equal(t, http.StatusAccepted, status, text)
	assert.Contains(t, text, `"total":1`)
	require.Eventually(t, func() bool {
		dls, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{IDs: []string{hooli}, Replayed: true})
		return err == nil && len(dls) == 1 && dls[0].Replayed != nil
	}, 20*time.Second, 20*time.Millisecond)
}

// TestOpenDashboard: without a token (a loopback listener) pages read
// without login, but actions still need the session's CSRF token, which a
// page on another site cannot read.
func TestOpenDashboard(t *testing.T) {
	e := start(t, "")
	e.failingRun()
	c := e.client()
	status, body, _ := e.get(c, "/ui/dlq")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "customers/acme.json")
	assert.NotContains(t, body, "Log out")
	status, _, h := e.get(e.client(), "/ui/login")
	assert.Equal(t, http.StatusSeeOther, status)
	assert.Equal(t, "/ui/", h.Get("Location"))

	// A cross-site form post carries no session cookie (SameSite=Strict)
	// and no token.
	status, _, _ = e.post(e.client(), "/ui/dlq/purge", url.Values{"flow": {"enrich"}})
	assert.Equal(t, http.StatusForbidden, status)
	status, _, _ = e.post(c, "/ui/dlq/purge", url.Values{"flow": {"enrich"}, "csrf": {csrf(t, body)}}, "Origin", "http://evil.example")
	assert.Equal(t, http.StatusForbidden, status)
	// A form-encoded API post is refused; JSON (which needs a CORS
	// preflight cross-site) is the API's own.
	status, _, _ = e.post(e.client(), "/ui/api/deadletters/purge", url.Values{"flow": {"enrich"}})
	assert.Equal(t, http.StatusForbidden, status)
	left, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, left, 1)

	status, _, _ = e.post(c, "/ui/dlq/purge", url.Values{"flow": {"enrich"}, "csrf": {csrf(t, body)}})
	assert.Equal(t, http.StatusSeeOther, status)
}

// TestFailingRunReplayedAfterTheFix walks the operator's path: the
// failing run in the runs list and on its page, its dead letter grouped by
// cause, the cause fixed, the group replayed with progress, and the replay
// linked to the new, succeeding run.
func TestFailingRunReplayedAfterTheFix(t *testing.T) {
	e := start(t, "")
	e.putCustomer("initech")
	e.publish("orders", `{"customer":"initech","amount":20}`)
	e.runs("enrich", state.StatusSucceeded, 1)
	failed := e.failingRun()
	e.publish("orders", `{"customer":"acme","amount":30}`)
	e.runs("enrich", state.StatusDeadLettered, 2)
	c := e.client()

	status, body, _ := e.get(c, "/ui/runs?flow=enrich&status=dead_lettered")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, failed.ID)
	assert.Equal(t, 2, strings.Count(body, `data-status="dead_lettered"`))
	assert.NotContains(t, body, `data-status="succeeded"`)
	_, body, _ = e.get(c, "/ui/runs?error="+url.QueryEscape("customers/acme"))
	assert.Equal(t, 2, strings.Count(body, "data-run="))
	_, body, _ = e.get(c, "/ui/runs?error=nothing-like-this")
	assert.Contains(t, body, "No runs match")
	_, body, _ = e.get(c, "/ui/runs?until="+url.QueryEscape(failed.Started.Add(-time.Hour).Format(time.RFC3339)))
	assert.Contains(t, body, "No runs match")
	status, body, _ = e.get(c, "/ui/runs?since=yesterday-ish")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "since: ")

	status, body, _ = e.get(c, "/ui/runs/"+failed.ID)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `data-step="load"`)
	assert.Contains(t, body, "customers/acme.json")
	assert.Contains(t, body, "/ui/dlq/", "the run links its dead letter")

	status, body, _ = e.get(c, "/ui/dlq")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `data-group-flow="enrich"`)
	assert.Regexp(t, `<td class="num">2</td>`, body, "both failures are one cause")

	// Fix the cause, then replay the group.
	e.putCustomer("acme")
	dls, err := e.state.DeadLetterGroups(t.Context(), state.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	status, _, h := e.post(c, "/ui/dlq/replay", url.Values{"flow": {"enrich"}, "step": {"load"}, "error": {dls[0].Error}, "exact": {"1"},
		"csrf": {csrf(t, body)}})
	require.Equal(t, http.StatusSeeOther, status)
	job := h.Get("Location")
	require.True(t, strings.HasPrefix(job, "/ui/jobs/"), job)
	require.Eventually(t, func() bool {
		_, body, _ := e.get(c, job)
		return strings.Contains(body, `data-finished="true"`) && strings.Contains(body, "Done: 2 of 2")
	}, 20*time.Second, 50*time.Millisecond)
	e.runs("enrich", state.StatusSucceeded, 3)

	replayed, err := e.state.DeadLetters(t.Context(), state.DeadLetterFilter{Replayed: true})
	require.NoError(t, err)
	require.Len(t, replayed, 2)
	for _, dl := range replayed {
		require.NotNil(t, dl.Replayed)
		var runID string
		require.Eventually(t, func() bool {
			_, body, _ := e.get(c, "/ui/dlq/"+dl.ID)
			m := regexp.MustCompile(`data-replay-run="([^"]+)"`).FindStringSubmatch(body)
			if m != nil {
				runID = m[1]
			}
			return m != nil
		}, 20*time.Second, 50*time.Millisecond, "the dead letter links its replay's run")
		_, body, _ := e.get(c, "/ui/runs/"+runID)
		assert.Contains(t, body, `<span class="badge ok">succeeded</span>`)
		assert.Contains(t, body, "Replay of", "the run links back to the dead letter")
	}
	_, body, _ = e.get(c, "/ui/dlq")
	assert.Contains(t, body, "No dead letters wait")
}

var countRe = regexp.MustCompile(`data-step="load"[^>]*>\s*<h3>[^<]*<span[^>]*>[^<]*</span></h3>\s*<div class="stats"><span>runs <b data-stat="count">(\d+)</b>`)

// TestFlowGraphAndLiveCounts: the flow page draws trigger, steps,
// branches and topics with the YAML beside them, and its graph fragment's
// counts move while messages flow.
func TestFlowGraphAndLiveCounts(t *testing.T) {
	e := start(t, "")
	e.putCustomer("initech")
	c := e.client()
	status, body, _ := e.get(c, "/ui/flows/enrich")
	require.Equal(t, http.StatusOK, status)
	for _, want := range []string{`data-step="load"`, `data-step="route"`, "branch large", `data-step="review"`, "→ topic done",
		"→ topic review", "→ bucket configs", "topic <span class=\"kind mono\">orders</span>", "enrich.dlq",
		`hx-get="/ui/flows/enrich/graph"`, "loads the customer&#39;s file", "max_attempts: 1"} {
		assert.Contains(t, body, want)
	}
	count := func() string {
		_, body, _ := e.get(c, "/ui/flows/enrich/graph", "HX-Request", "true")
		m := countRe.FindStringSubmatch(body)
		require.NotNil(t, m, body)
		return m[1]
	}
	assert.Equal(t, "0", count())
	for range 3 {
		e.publish("orders", `{"customer":"initech","amount":500}`)
	}
	require.Eventually(t, func() bool { return count() == "3" }, 20*time.Second, 20*time.Millisecond)

	_, body, _ = e.get(c, "/ui/flows/live")
	assert.Contains(t, body, `<tr data-flow="enrich">`)
	assert.Contains(t, body, `<td class="num" data-stat="runs">3</td>`)
	assert.Contains(t, body, `<span class="badge ok"`)
	status, _, _ = e.get(c, "/ui/flows/nope")
	assert.Equal(t, http.StatusNotFound, status)

	// A flow recording failures only says so beside its runs.
	_, body, _ = e.get(c, "/ui/flows/relay")
	assert.Contains(t, body, "Records failed runs only")
	_, body, _ = e.get(c, "/ui/flows/enrich")
	assert.NotContains(t, body, "Records failed runs only")
}

// TestUsageAndMachines: usage per flow per day as a table and an SVG
// chart; an entity's state and history.
func TestUsageAndMachines(t *testing.T) {
	e := start(t, "")
	c := e.client()
	status, body, _ := e.get(c, "/ui/machines?machine=order&key=o-1")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "has no entity")

	e.publish("order-events", `{"order_id":"o-1","type":"create"}`)
	e.runs("lifecycle", state.StatusSucceeded, 1)
	e.publish("order-events", `{"order_id":"o-1","type":"pay"}`)
	e.runs("lifecycle", state.StatusSucceeded, 2)
	e.failingRun()

	_, body, _ = e.get(c, "/ui/machines?machine=order&key=o-1")
	assert.Contains(t, body, `data-state="paid"`)
	assert.Contains(t, body, "<td>create</td><td>new</td><td>created</td>")
	_, body, _ = e.get(c, "/ui/machines?machine=order&in=paid")
	assert.Contains(t, body, `key=o-1">o-1</a>`)
	_, body, _ = e.get(c, "/ui/machines?machine=order&key=o-404")
	assert.Contains(t, body, "has no entity")

	status, body, _ = e.get(c, "/ui/usage")
	require.Equal(t, http.StatusOK, status)
	today := time.Now().UTC().Format("2006-01-02")
	assert.Contains(t, body, "<tr><td>"+today+"</td><td>lifecycle</td><td class=\"num\">2</td><td class=\"num\">0</td>")
	assert.Contains(t, body, "<tr><td>"+today+"</td><td>enrich</td><td class=\"num\">1</td><td class=\"num\">1</td>")
	assert.Contains(t, body, `<svg class="chart"`)
	assert.Contains(t, body, "enrich: 1 calls and 1 errors over the last 14 days")
}

// TestRunPageShowsTraceAndLineage: a run's page shows its trace id, what
// it wrote and published, the run whose output it came from, and the runs
// its outputs fed.
func TestRunPageShowsTraceAndLineage(t *testing.T) {
	e := start(t, "")
	now := time.Now().UTC()
	parent := state.Run{ID: "run-parent", Flow: "enrich", Trigger: "topic:in", Input: "m-1", Status: state.StatusSucceeded,
		Started: now, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		Steps: []state.StepRun{{ID: "save", Node: "storage.put", Status: "succeeded", Attempts: 1, Wrote: []string{"out/x1.json"}},
			{ID: "fan", Node: "publish", Status: "succeeded", Attempts: 1, Published: []string{"orders", "audit"}}}}
	child := state.Run{ID: "run-child", Flow: "lifecycle", Trigger: "topic:orders", Input: "m-2", Status: state.StatusSucceeded,
		Started: now.Add(time.Millisecond), TraceID: parent.TraceID, Parent: parent.ID}
	e.state.Record(parent)
	e.state.Record(child)
	require.NoError(t, e.state.Flush(t.Context()))

	status, body, _ := e.get(e.client(), "/ui/runs/run-parent")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `data-trace-id="4bf92f3577b34da6a3ce929d0e0e4736"`)
	assert.Contains(t, body, `href="/ui/runs/run-child"`, "the run its output fed")
	assert.Contains(t, body, `wrote <a class="mono" href="/ui/objects/out/x1.json">out/x1.json</a>`)
	assert.Regexp(t, `published to <span class="mono">orders</span>, <span class="mono">audit</span>`, body)
	status, body, _ = e.get(e.client(), "/ui/runs/run-child")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `href="/ui/runs/run-parent"`, "the run its input came from")
}

// TestWrongTokenGuessesAreLimited: a client that sent the wrong admin
// token guessBurst times is refused at once, even with the right one,
// in the login form and as a bearer header.
func TestWrongTokenGuessesAreLimited(t *testing.T) {
	e := start(t, "s3cret-token")
	for range 30 { // guessBurst
		status, _, _ := e.post(e.client(), "/ui/login", url.Values{"token": {"wrong"}})
		require.Equal(t, http.StatusUnauthorized, status)
	}
	status, body, h := e.post(e.client(), "/ui/login", url.Values{"token": {"s3cret-token"}})
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Equal(t, "1", h.Get("Retry-After"))
	assert.Contains(t, body, "Too many wrong tokens")
	status, _, _ = e.get(e.client(), "/ui/api/flows", "Authorization", "Bearer s3cret-token")
	assert.Equal(t, http.StatusUnauthorized, status, "the bearer header is a guess too")
}

// TestObjectsLinkedAndDownloaded: a bucket run's input object and what a
// step wrote link to downloads, which need the credentials and never
// render in the dashboard's origin.
func TestObjectsLinkedAndDownloaded(t *testing.T) {
	e := start(t, token)
	ctx := t.Context()
	require.NoError(t, e.store.EnsureBucket(ctx, "uploads"))
	_, err := e.store.PutBytes(ctx, "uploads", "pages/a.html", []byte("<script>alert(1)</script>"), storage.PutOptions{})
	require.NoError(t, err)
	e.state.Record(state.Run{ID: "run-obj", Flow: "enrich", Trigger: "bucket:uploads", Input: "uploads/pages/a.html@e1",
		Status: state.StatusSucceeded, Started: time.Now().UTC(),
		Steps: []state.StepRun{{ID: "save", Node: "storage.put", Status: "succeeded", Attempts: 1, Wrote: []string{"uploads/pages/a.html"}}}})
	require.NoError(t, e.state.Flush(ctx))

	status, _, _ := e.get(e.client(), "/ui/objects/uploads/pages/a.html")
	assert.Equal(t, http.StatusSeeOther, status, "no credentials: to the login")
	status, body, _ := e.get(e.client(), "/ui/runs/run-obj", "Authorization", "Bearer "+token)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 2, strings.Count(body, `href="/ui/objects/uploads/pages/a.html"`), "the input and what the step wrote")

	status, body, h := e.get(e.client(), "/ui/objects/uploads/pages/a.html", "Authorization", "Bearer "+token)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "<script>alert(1)</script>", body)
	assert.Equal(t, "application/octet-stream", h.Get("Content-Type"))
	assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	assert.Contains(t, h.Get("Content-Security-Policy"), "sandbox")
	assert.Equal(t, `attachment; filename=a.html`, h.Get("Content-Disposition"))

	status, _, _ = e.get(e.client(), "/ui/objects/uploads/missing.txt", "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusNotFound, status)
	status, _, _ = e.get(e.client(), "/ui/objects/uploads/..%2f..%2fstate.db", "Authorization", "Bearer "+token)
	assert.Equal(t, http.StatusNotFound, status, "nothing outside the buckets")
}
