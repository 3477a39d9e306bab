package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testredis"
)

// sseWait bounds every wait on a stream.
const sseWait = 20 * time.Second

// sseItem is one thing read from a stream: an event, a comment, or the end.
type sseItem struct {
	id      int64
	event   string
	data    string
	comment string
	eof     bool
	// at is when the client read the event's last line.
	at time.Time
}

// body decodes the event's data.
func (it sseItem) body(t testing.TB) event.Body {
	t.Helper()
	var b event.Body
	if err := json.Unmarshal([]byte(it.data), &b); err != nil {
		t.Fatalf("event %d data %q: %v", it.id, it.data, err)
	}
	return b
}

// sseStream is a real SSE client on loopback.
type sseStream struct {
	t        testing.TB
	res      *http.Response
	items    chan sseItem
	cancel   context.CancelFunc
	comments []string
}

// openStream opens path with the admin key (hdr as in env.do) and expects
// a 200 event stream.
func (e *env) openStream(path string, hdr ...string) *sseStream {
	e.t.Helper()
	s, status, body := e.tryStream(path, hdr...)
	if status != http.StatusOK {
		e.t.Fatalf("GET %s: status %d, want 200; body %s", path, status, body)
	}
	return s
}

// tryStream opens path and returns the stream, or the status and body of a
// refusal.
func (e *env) tryStream(path string, hdr ...string) (*sseStream, int, string) {
	e.t.Helper()
	return openStreamAt(e.t, e.base, path, hdr...)
}

func openStreamAt(t testing.TB, base, path string, hdr ...string) (*sseStream, int, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", path, err)
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("a refused stream has content type %q, want application/problem+json", ct)
		}
		var b strings.Builder
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			b.WriteString(sc.Text())
		}
		return nil, res.StatusCode, b.String()
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q, want text/event-stream", ct)
	}
	s := &sseStream{t: t, res: res, items: make(chan sseItem, 4096), cancel: cancel}
	go s.read(ctx)
	t.Cleanup(s.close)
	return s, res.StatusCode, ""
}

// read parses the stream into items until it ends.
func (s *sseStream) read(ctx context.Context) {
	defer close(s.items)
	send := func(it sseItem) bool {
		select {
		case s.items <- it:
			return true
		case <-ctx.Done():
			return false
		}
	}
	sc := bufio.NewScanner(s.res.Body)
	var cur sseItem
	fields := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			cur.at = time.Now()
			if fields && !send(cur) {
				return
			}
			cur, fields = sseItem{}, false
		case strings.HasPrefix(line, ":"):
			if !send(sseItem{comment: strings.TrimSpace(line[1:])}) {
				return
			}
		case strings.HasPrefix(line, "id: "):
			id, err := strconv.ParseInt(line[4:], 10, 64)
			if err != nil {
				s.t.Errorf("bad id line %q", line)
			}
			cur.id, fields = id, true
		case strings.HasPrefix(line, "event: "):
			cur.event, fields = line[7:], true
		case strings.HasPrefix(line, "data: "):
			if cur.data != "" {
				cur.data += "\n"
			}
			cur.data, fields = cur.data+line[6:], true
		default:
			s.t.Errorf("unexpected line %q", line)
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		s.t.Logf("reading the stream: %v", err)
	}
	send(sseItem{eof: true})
}

// close disconnects the client.
func (s *sseStream) close() {
	s.cancel()
	s.res.Body.Close()
}

// item returns the next item, failing after sseWait.
func (s *sseStream) item() sseItem {
	s.t.Helper()
	return s.itemBy(time.Now().Add(sseWait))
}

// itemBy returns the next item, failing at the deadline.
func (s *sseStream) itemBy(deadline time.Time) sseItem {
	s.t.Helper()
	select {
	case it, ok := <-s.items:
		if !ok {
			return sseItem{eof: true}
		}
		return it
	case <-time.After(time.Until(deadline)):
		s.t.Fatalf("no event within %s", sseWait)
	}
	return sseItem{}
}

// next returns the next event, recording comments; it fails at the end of
// the stream, or when no event comes within sseWait (keep-alives do not
// count).
func (s *sseStream) next() sseItem {
	s.t.Helper()
	deadline := time.Now().Add(sseWait)
	for {
		it := s.itemBy(deadline)
		switch {
		case it.eof:
			s.t.Fatalf("the stream ended; want another event (%s)", s.res.Request.URL)
		case it.comment != "":
			s.comments = append(s.comments, it.comment)
		default:
			return it
		}
	}
}

// until reads events until one satisfies done (inclusive), failing after
// sseWait overall.
func (s *sseStream) until(done func(sseItem) bool) []sseItem {
	s.t.Helper()
	deadline := time.Now().Add(sseWait)
	var out []sseItem
	for {
		it := s.itemBy(deadline)
		switch {
		case it.eof:
			s.t.Fatalf("the stream ended after %d events; want more (%s)", len(out), s.res.Request.URL)
		case it.comment != "":
			s.comments = append(s.comments, it.comment)
		default:
			out = append(out, it)
			if done(it) {
				return out
			}
		}
	}
}

// ends asserts the server ends the stream with no further event.
func (s *sseStream) ends() {
	s.t.Helper()
	deadline := time.Now().Add(sseWait)
	for {
		it := s.itemBy(deadline)
		if it.eof {
			return
		}
		if it.comment == "" {
			s.t.Fatalf("event %d (%s) where the stream should have ended", it.id, it.event)
		}
	}
}

// loggedEvents returns the task's events in the database.
func (e *env) loggedEvents(id string) []event.Event {
	e.t.Helper()
	evs, err := e.app.Store.ListEvents(context.Background(), store.EventFilter{
		TaskID: uuid.MustParse(id), Scope: store.AdminScope, Limit: 10000,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

// sameAsLog fails unless got is exactly the log's events, in order, with
// their ids, types and bodies.
func sameAsLog(t *testing.T, got []sseItem, want []event.Event) {
	t.Helper()
	g := make([]string, len(got))
	for i, it := range got {
		g[i] = fmt.Sprintf("%d %s", it.id, it.event)
	}
	w := make([]string, len(want))
	for i, ev := range want {
		w[i] = fmt.Sprintf("%d %s", ev.ID, ev.EventType)
	}
	if !slices.Equal(g, w) {
		t.Fatalf("streamed\n  %v\nwant exactly the log\n  %v", g, w)
	}
	for i := range got {
		var a, b any
		if json.Unmarshal([]byte(got[i].data), &a) != nil || json.Unmarshal(want[i].Body, &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("event %d data %s, want the stored body %s", got[i].id, got[i].data, want[i].Body)
		}
	}
}

// statusOf is the status in an event's data ("" when it is not JSON).
func statusOf(it sseItem) string {
	var b struct {
		Status string `json:"status"`
	}
	_ = json.Unmarshal([]byte(it.data), &b)
	return b.Status
}

func isCompleted(it sseItem) bool {
	return strings.HasSuffix(it.event, "_status_update") && statusOf(it) == "completed"
}

func isFailed(it sseItem) bool {
	return strings.HasSuffix(it.event, "_status_update") && statusOf(it) == "failed"
}

// TestTaskStreamToCompletion streams a generation task (status and
// progress events) while it runs: every event once, in id order, then the
// stream ends after the terminal event.
func TestTaskStreamToCompletion(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		// run_at a moment away: the client is connected before it runs.
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{
			"task_type": "generation", "prompt": "a red summer dress", "seed": 42, "width": 256, "height": 256,
			"run_at": time.Now().Add(700 * time.Millisecond).UTC().Format(time.RFC3339Nano),
		})
		id := created["id"].(string)
		s := e.openStream("/api/v1/tasks/" + id + "/events")
		first := s.next()
		if now := e.must(200, "GET", "/api/v1/tasks/"+id, nil); now["status"] != "pending" {
			t.Fatalf("the task is %v before the stream's first event was read; want it still pending", now["status"])
		}
		got := append([]sseItem{first}, s.until(isCompleted)...)
		s.ends()
		sameAsLog(t, got, e.loggedEvents(id))

		var statuses []string
		progress := 0
		for i, it := range got {
			b := it.body(t)
			if b.TaskID.String() != id || b.TaskType != "generation" || b.EventType != it.event {
				t.Errorf("event %d body %s does not describe the task", it.id, it.data)
			}
			if i > 0 && it.id <= got[i-1].id {
				t.Errorf("ids do not increase: %d after %d", it.id, got[i-1].id)
			}
			switch it.event {
			case "generation_status_update":
				statuses = append(statuses, string(b.Status))
			case "generation_progress_update":
				progress++
			default:
				t.Errorf("event type %q", it.event)
			}
		}
		if !slices.Equal(statuses, []string{"pending", "executing", "completed"}) || progress == 0 {
			t.Errorf("statuses %v with %d progress events; want pending, executing, completed and progress", statuses, progress)
		}
	})
}

// TestTaskStreamReconnect disconnects after the first event and reconnects
// with Last-Event-ID while the task runs, then again with ?after=: every
// event arrives exactly once overall.
func TestTaskStreamReconnect(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "hi", "sleep_ms": 400})
		id := created["id"].(string)
		path := "/api/v1/tasks/" + id + "/events"

		first := e.openStream(path)
		got := []sseItem{first.next()}
		first.close()
		if b := got[0].body(t); b.Status != "pending" {
			t.Fatalf("first event is %s, want pending", b.Status)
		}

		second := e.openStream(path, "Last-Event-ID", strconv.FormatInt(got[0].id, 10))
		got = append(got, second.next()) // executing, live or replayed
		second.close()

		third := e.openStream(path + "?after=" + strconv.FormatInt(got[1].id, 10))
		got = append(got, third.until(isCompleted)...)
		third.ends()
		sameAsLog(t, got, e.loggedEvents(id))
		if len(got) != 3 {
			t.Errorf("%d events, want pending, executing, completed", len(got))
		}

		// Last-Event-ID wins over ?after= (EventSource keeps the URL).
		again := e.openStream(path+"?after=0", "Last-Event-ID", strconv.FormatInt(got[1].id, 10))
		rest := again.until(isCompleted)
		again.ends()
		sameAsLog(t, rest, e.loggedEvents(id)[2:])
	})
}

// TestTaskStreamOfFinishedTask replays a finished task and ends; a client
// that already has the terminal event gets an empty stream that ends at
// once.
func TestTaskStreamOfFinishedTask(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "fail_with": "boom"})
		id := created["id"].(string)
		e.waitStatus(id, "failed")
		all := e.openStream("/api/v1/tasks/" + id + "/events")
		got := all.until(isFailed)
		all.ends()
		sameAsLog(t, got, e.loggedEvents(id))
		if b := got[len(got)-1].body(t); b.ErrorMessage != "boom" || b.ErrorCategory != "permanent" {
			t.Errorf("failed event body %s", got[len(got)-1].data)
		}

		start := time.Now()
		done := e.openStream("/api/v1/tasks/"+id+"/events", "Last-Event-ID", strconv.FormatInt(got[len(got)-1].id, 10))
		done.ends()
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("the stream of a finished task took %s to end", took)
		}

		// A retry starts a new run: a client resuming from the failure
		// sees it, up to its next terminal event.
		e.must(200, "POST", "/api/v1/tasks/"+id+"/retry", nil)
		retried := e.openStream("/api/v1/tasks/"+id+"/events", "Last-Event-ID", strconv.FormatInt(got[len(got)-1].id, 10))
		more := retried.until(isFailed)
		retried.ends()
		sameAsLog(t, more, e.loggedEvents(id)[len(got):])
	})
}

// TestFirehose streams /api/v1/events: from now by default, with filters,
// and replayed with ?after=.
func TestFirehose(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		old := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "before"})
		e.waitStatus(old["id"].(string), "completed")

		all := e.openStream("/api/v1/events")
		completedEcho := e.openStream("/api/v1/events?task_type=echo&status=completed")
		acme := e.openStream("/api/v1/events?origin_tenant_id=acme")
		gen := e.openStream("/api/v1/events?task_type=generation")

		a := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "a", "origin_tenant_id": "acme"})
		e.waitStatus(a["id"].(string), "completed")
		b := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "b"})
		e.waitStatus(b["id"].(string), "completed")

		// From now: nothing of the task finished before connecting.
		got := all.until(func(it sseItem) bool { return isCompleted(it) && strings.Contains(it.data, b["id"].(string)) })
		want := append(e.loggedEvents(a["id"].(string)), e.loggedEvents(b["id"].(string))...)
		slices.SortFunc(want, func(x, y event.Event) int { return int(x.ID - y.ID) })
		sameAsLog(t, got, want)

		c1, c2 := completedEcho.next(), completedEcho.next()
		if !strings.Contains(c1.data, a["id"].(string)) || !strings.Contains(c2.data, b["id"].(string)) || !isCompleted(c1) || !isCompleted(c2) {
			t.Errorf("completed echo events %s / %s", c1.data, c2.data)
		}
		acmeGot := acme.until(isCompleted)
		sameAsLog(t, acmeGot, e.loggedEvents(a["id"].(string)))

		// ?after=0 replays the whole log, then continues live.
		replay := e.openStream("/api/v1/events?after=0")
		everything := replay.until(func(it sseItem) bool { return isCompleted(it) && strings.Contains(it.data, b["id"].(string)) })
		want = slices.Concat(e.loggedEvents(old["id"].(string)), want)
		sameAsLog(t, everything, want)
		c := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "c"})
		if it := replay.next(); !strings.Contains(it.data, c["id"].(string)) {
			t.Errorf("after the replay: %s, want the new task's event", it.data)
		}

		// No generation task ran: that stream has only keep-alives.
		select {
		case it := <-gen.items:
			if it.comment == "" {
				t.Errorf("task_type=generation got %+v", it)
			}
		case <-time.After(200 * time.Millisecond):
		}
	})
}

// TestStreamErrors are problems, never a stream.
func TestStreamErrors(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		tenant := e.tenantKey("acme")
		other := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "x", "origin_tenant_id": "other"})
		taskPath := "/api/v1/tasks/" + other["id"].(string) + "/events"
		cases := []struct {
			name   string
			path   string
			hdr    []string
			status int
			loc    string
		}{
			{"no key", "/api/v1/events", []string{"Authorization", ""}, 401, ""},
			{"bad key", taskPath, []string{"Authorization", "Bearer nope-nope-nope-nope"}, 401, ""},
			{"bad after", "/api/v1/events?after=x", nil, 422, "query.after"},
			{"negative after", taskPath + "?after=-1", nil, 422, "query.after"},
			{"bad Last-Event-ID", taskPath, []string{"Last-Event-ID", "abc"}, 422, "header.Last-Event-ID"},
			{"unknown task type", "/api/v1/events?task_type=nosuch", nil, 422, "query.task_type"},
			{"bad status", "/api/v1/events?status=done", nil, 422, "query.status"},
			{"tenant naming another tenant", "/api/v1/events?origin_tenant_id=other", []string{"Authorization", "Bearer " + tenant}, 422, "query.origin_tenant_id"},
			{"unknown task", "/api/v1/tasks/" + uuid.NewString() + "/events", nil, 404, ""},
			{"malformed task id", "/api/v1/tasks/not-a-uuid/events", nil, 404, ""},
			{"another tenant's task", taskPath, []string{"Authorization", "Bearer " + tenant}, 404, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				s, status, body := openStreamAt(t, e.base, tc.path, tc.hdr...)
				if s != nil {
					s.close()
					t.Fatalf("got a stream, want %d", tc.status)
				}
				var m map[string]any
				if err := json.Unmarshal([]byte(body), &m); err != nil {
					t.Fatalf("body %q: %v", body, err)
				}
				problemAt(t, response{status: status, header: http.Header{"Content-Type": {"application/problem+json"}}, body: []byte(body)}, tc.status, tc.loc)
			})
		}
	})
}

// TestStreamTenantConfinement: a tenant key's firehose carries only its
// tenant's events; its own task streams fine.
func TestStreamTenantConfinement(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, e *env) {
		key := e.tenantKey("acme")
		mine := e.openStream("/api/v1/events", "Authorization", "Bearer "+key)
		scoped := e.openStream("/api/v1/events?origin_tenant_id=acme", "Authorization", "Bearer "+key)
		theirs := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "other", "origin_tenant_id": "other"})
		e.waitStatus(theirs["id"].(string), "completed")
		ours := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "ours"}, "Authorization", "Bearer "+key)
		id := ours["id"].(string)
		if ours["origin_tenant_id"] != "acme" {
			t.Fatalf("tenant task = %v", ours)
		}
		for _, s := range []*sseStream{mine, scoped} {
			got := s.until(isCompleted)
			sameAsLog(t, got, e.loggedEvents(id))
		}
		own := e.openStream("/api/v1/tasks/"+id+"/events", "Authorization", "Bearer "+key)
		got := own.until(isCompleted)
		own.ends()
		sameAsLog(t, got, e.loggedEvents(id))
	})
}

// TestStreamKeepAlive sees the keep-alive comment of an idle stream.
func TestStreamKeepAlive(t *testing.T) {
	t.Parallel()
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			e := start(t, d, func(c *config.Config) { c.SSEKeepAlive = 100 * time.Millisecond })
			s := e.openStream("/api/v1/events")
			begin := time.Now()
			for n := 0; n < 2; {
				it := s.item()
				if it.eof || it.comment != "keep-alive" {
					t.Fatalf("got %+v, want a keep-alive comment", it)
				}
				n++
			}
			if took := time.Since(begin); took > 5*time.Second {
				t.Errorf("two keep-alives took %s at a 100ms interval", took)
			}
		})
	}
}

// TestStreamOutlivesReadTimeout serves the API under a server whose read
// timeout is far shorter than the stream: the stream must go on.
func TestStreamOutlivesReadTimeout(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite", func(c *config.Config) { c.SSEKeepAlive = 100 * time.Millisecond })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.app.API.Handler(), ReadTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 300 * time.Millisecond}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s, status, body := openStreamAt(t, "http://"+ln.Addr().String(), "/api/v1/events")
	if s == nil {
		t.Fatalf("status %d: %s", status, body)
	}
	deadline := time.Now().Add(time.Second) // three read timeouts
	for time.Now().Before(deadline) {
		if it := s.item(); it.eof {
			t.Fatal("the stream ended at the server's read timeout")
		}
	}
	c := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "late"})
	if it := s.next(); !strings.Contains(it.data, c["id"].(string)) {
		t.Errorf("got %s, want the new task's event", it.data)
	}
}

// TestStreamsWithRedis runs the streams with the Redis bus, and with a
// Redis that is down: tasks run to completion either way and streams stay
// live (woken by the database's notifications).
func TestStreamsWithRedis(t *testing.T) {
	t.Parallel()
	buses := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string { return testredis.URL(t) }},
		{"redis down", func(t *testing.T) string { return testredis.ClosedURL(t) }},
	}
	for _, bus := range buses {
		t.Run(bus.name, func(t *testing.T) {
			t.Parallel()
			for _, d := range testdb.Dialects {
				t.Run(d, func(t *testing.T) {
					t.Parallel()
					url := bus.url(t)
					e := start(t, d, func(c *config.Config) { c.RedisURL, c.RedisPrefix = url, testredis.Prefix(t) })
					fire := e.openStream("/api/v1/events")
					created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "hi", "sleep_ms": 50})
					id := created["id"].(string)
					s := e.openStream("/api/v1/tasks/" + id + "/events")
					got := s.until(isCompleted)
					s.ends()
					sameAsLog(t, got, e.loggedEvents(id))
					sameAsLog(t, fire.until(isCompleted), e.loggedEvents(id))
				})
			}
		})
	}
}

// TestShutdownEndsStreams stops a server with a stream open: the stream
// ends and the server stops promptly instead of waiting for it to idle.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir, cfg.APIKey, cfg.Workers = t.TempDir(), adminKey, 1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := newApp(ctx, cfg, t)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var s *sseStream
	for deadline := time.Now().Add(sseWait); s == nil; {
		if conn, err := net.Dial("tcp", cfg.Addr); err == nil {
			conn.Close()
			s, _, _ = openStreamAt(t, "http://"+cfg.Addr, "/api/v1/events")
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not start")
		}
	}
	begin := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(sseWait):
		t.Fatal("Serve did not return")
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("shutdown with an open stream took %s", took)
	}
	s.ends()
}

// newApp builds a server process with workers, as the serve role does.
func newApp(ctx context.Context, cfg config.Config, t *testing.T) (*app.App, error) {
	return app.New(ctx, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t))
}

// TestStreamsInOpenAPI: both raw routes are in the OpenAPI document, as
// event streams with their parameters.
func TestStreamsInOpenAPI(t *testing.T) {
	t.Parallel()
	e := start(t, "sqlite")
	var doc struct {
		Paths map[string]map[string]struct {
			Security   []map[string][]string `json:"security"`
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
			Responses map[string]struct {
				Content map[string]json.RawMessage `json:"content"`
			} `json:"responses"`
		} `json:"paths"`
	}
	r := e.do("GET", "/openapi.json", nil)
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	for path, params := range map[string][]string{
		"/api/v1/tasks/{task_id}/events": {"path task_id", "header Last-Event-ID", "query after"},
		"/api/v1/events":                 {"query task_type", "query status", "query origin_tenant_id", "header Last-Event-ID", "query after"},
	} {
		op, ok := doc.Paths[path]["get"]
		if !ok {
			t.Errorf("%s is not documented", path)
			continue
		}
		var got []string
		for _, p := range op.Parameters {
			got = append(got, p.In+" "+p.Name)
		}
		for _, p := range params {
			if !slices.Contains(got, p) {
				t.Errorf("%s lacks parameter %s (has %v)", path, p, got)
			}
		}
		if _, ok := op.Responses["200"].Content["text/event-stream"]; !ok || len(op.Security) == 0 {
			t.Errorf("%s: 200 is not a text/event-stream, or no security", path)
		}
	}
}
