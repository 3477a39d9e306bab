package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/client"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/tcpproxy"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// recorder is a transport that records the event-stream requests it
// sends: their Last-Event-ID and the answer's status.
type recorder struct {
	mu      sync.Mutex
	streams []streamRequest
}

type streamRequest struct {
	lastEventID string
	status      int // 0: no answer
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	if strings.HasSuffix(req.URL.Path, "/events") {
		s := streamRequest{lastEventID: req.Header.Get("Last-Event-ID")}
		if err == nil {
			s.status = res.StatusCode
		}
		r.mu.Lock()
		r.streams = append(r.streams, s)
		r.mu.Unlock()
	}
	return res, err
}

func (r *recorder) requests() []streamRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.streams)
}

func newClient(t *testing.T, base string, rt http.RoundTripper) *client.Client {
	t.Helper()
	opts := []client.Option{client.WithAPIKey(testKey)}
	if rt != nil {
		opts = append(opts, client.WithHTTPClient(&http.Client{Transport: rt}))
	}
	c, err := client.New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startServer runs a server of its own for a test that needs other
// settings than TestMain's, with the "slow" mock executor.
func startServer(t *testing.T, dialect string, change func(*config.Config)) string {
	t.Helper()
	cfg := testserver.Config(t, dialect, testKey)
	cfg.File = "client-test.yaml"
	cfg.Executors = map[string]config.ExecutorEntry{
		"mock": {Type: "mock"}, "local": {Type: "local"},
		"slow": {Type: "mock", Settings: json.RawMessage(`{"step_delay":"300ms"}`)},
	}
	if change != nil {
		change(&cfg)
	}
	return testserver.Start(t, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t)).Base
}

// TestWatchResumesAfterDrop cuts the event stream's connection (a proxy on
// loopback closes it and refuses connections for a while) after the first
// event, while the task goes on running: Watch reconnects with
// Last-Event-ID and yields every event exactly once, in order — the same
// events, byte for byte, as a full replay of the finished task's stream.
func TestWatchResumesAfterDrop(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			base := startServer(t, dialect, nil)
			proxy := tcpproxy.New(t, strings.TrimPrefix(base, "http://"))
			rec := &recorder{}
			c := newClient(t, "http://"+proxy.Addr(), rec)
			direct := newClient(t, base, nil)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			task, err := direct.Create(ctx, client.TaskCreate{Type: "generation", ProviderType: "slow",
				Fields: map[string]any{"prompt": "a linen dress", "width": 64, "height": 64}})
			if err != nil {
				t.Fatal(err)
			}
			var got []client.Event
			outage := make(chan struct{})
			for ev, err := range c.Watch(ctx, task.ID, nil) {
				if err != nil {
					t.Fatalf("watch, after %d events: %v", len(got), err)
				}
				got = append(got, ev)
				if len(got) == 1 {
					// The connection drops and the proxy refuses new
					// ones for 700 ms while the task runs on: its
					// executing and first progress events happen then.
					proxy.Cut()
					go func() {
						defer close(outage)
						time.Sleep(700 * time.Millisecond)
						proxy.Restore()
					}()
				}
			}
			<-outage
			var all []client.Event
			for ev, err := range direct.Watch(ctx, task.ID, nil) {
				if err != nil {
					t.Fatal(err)
				}
				all = append(all, ev)
			}
			if len(all) < 4 || !all[len(all)-1].Terminal() || all[len(all)-1].Status != client.StatusCompleted {
				t.Fatalf("the replay has %d events, the last %+v; want pending, executing, progress…, completed", len(all), all[len(all)-1])
			}
			if len(got) != len(all) {
				t.Errorf("watch got %d events, the replay %d: %v vs %v", len(got), len(all), ids(got), ids(all))
			}
			for i := range min(len(got), len(all)) {
				if got[i].ID != all[i].ID || string(got[i].Data) != string(all[i].Data) {
					t.Errorf("event %d: got %d %s, want %d %s", i, got[i].ID, got[i].Data, all[i].ID, all[i].Data)
				}
			}
			streams := rec.requests()
			// The stream resumed after an event received before the cut,
			// and later events came on the new connection.
			var resumed, refused bool
			for _, s := range streams[1:] {
				i := slices.IndexFunc(got, func(e client.Event) bool { return jsonInt(e.ID) == s.lastEventID })
				resumed = resumed || s.status == http.StatusOK && i >= 0 && i < len(got)-1
				refused = refused || s.status == 0
			}
			if streams[0].lastEventID != "" || !resumed || !refused {
				t.Errorf("stream requests %+v: want the first without Last-Event-ID, one refused during the outage "+
					"and one answered after it with the Last-Event-ID of an event received before the cut", streams)
			}
		})
	}
}

func ids(evs []client.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func jsonInt(n int64) string {
	raw, _ := json.Marshal(n)
	return string(raw)
}

// TestWatchFinishedTask: watching a finished task yields its events up to
// the terminal one; watching it after that event yields nothing and ends.
func TestWatchFinishedTask(t *testing.T) {
	t.Parallel()
	c := newClient(t, serverURL, nil)
	ctx := t.Context()
	task, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "done"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, task.ID, nil); err != nil {
		t.Fatal(err)
	}
	var evs []client.Event
	for ev, err := range c.Watch(ctx, task.ID, nil) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if len(evs) != 3 || evs[2].Status != client.StatusCompleted || evs[0].TaskID != task.ID {
		t.Fatalf("events %+v, want pending, executing, completed of %s", evs, task.ID)
	}
	n := 0
	for _, err := range c.Watch(ctx, task.ID, &client.WatchOptions{After: evs[2].ID}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 0 {
		t.Errorf("watching after the terminal event yielded %d events", n)
	}
}

// TestWatchRefused: a stream the server refuses for good (an unknown task,
// a wrong key) is one *Problem, and Watch ends.
func TestWatchRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, key, id string
		want          int
	}{
		{"unknown task", testKey, "01939a4e-0000-7000-8000-000000000000", http.StatusNotFound},
		{"not a task id", testKey, "../../healthz", http.StatusNotFound},
		{"wrong key", "not-the-key-0123456789", "01939a4e-0000-7000-8000-000000000000", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := client.New(serverURL, client.WithAPIKey(tt.key))
			if err != nil {
				t.Fatal(err)
			}
			var errs []error
			for _, err := range c.Watch(t.Context(), tt.id, nil) {
				errs = append(errs, err)
			}
			var p *client.Problem
			if len(errs) != 1 || !errors.As(errs[0], &p) || p.Status != tt.want {
				t.Fatalf("watch yielded %v, want one problem %d", errs, tt.want)
			}
		})
	}
}

// TestWatchIdle: keep-alive comments keep an idle stream up; a stream on
// which nothing arrives for IdleTimeout is dropped and opened again with
// Last-Event-ID, until MaxRetries silent connections make Watch give up.
func TestWatchIdle(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name       string
		keepAlive  time.Duration
		idle       time.Duration
		deadline   time.Duration // when the test's context ends the watch
		wantGiveUp bool
	}{
		{"keep-alives hold it", 100 * time.Millisecond, time.Second, 2500 * time.Millisecond, false},
		{"silence drops it", time.Hour, 300 * time.Millisecond, 30 * time.Second, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := startServer(t, "sqlite", func(c *config.Config) { c.SSEKeepAlive = tt.keepAlive })
			rec := &recorder{}
			c := newClient(t, base, rec)
			task, err := c.Create(t.Context(), client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "later"},
				RunAt: time.Now().Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), tt.deadline)
			defer cancel()
			var errs []error
			events := 0
			for ev, err := range c.Watch(ctx, task.ID, &client.WatchOptions{IdleTimeout: tt.idle, MaxRetries: 2, MaxBackoff: 50 * time.Millisecond}) {
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if ev.Status != client.StatusPending {
					t.Errorf("event %+v", ev)
				}
				events++
			}
			streams := rec.requests()
			if events != 1 || len(errs) != 1 {
				t.Fatalf("%d events and errors %v, want the pending event and one error", events, errs)
			}
			if tt.wantGiveUp {
				// The first stream gave the event; the next two, resumed
				// after it, stayed silent and were dropped.
				last := streams[len(streams)-1]
				if errors.Is(errs[0], context.DeadlineExceeded) || len(streams) < 3 || last.lastEventID == "" || last.status != http.StatusOK {
					t.Errorf("ended with %v after stream requests %+v; want it to give up after two silent resumed streams", errs[0], streams)
				}
				return
			}
			if !errors.Is(errs[0], context.DeadlineExceeded) || len(streams) != 1 {
				t.Errorf("ended with %v after stream requests %+v; want one stream, up until the context ended", errs[0], streams)
			}
		})
	}
}

// TestWaitPollsWhenStreamRefused: with the key's one stream taken, the
// server answers 429 to Wait's stream; Wait reads the task instead, until
// it has finished.
func TestWaitPollsWhenStreamRefused(t *testing.T) {
	t.Parallel()
	base := startServer(t, "sqlite", func(c *config.Config) { c.SSEMaxStreamsPerKey = 1 })
	rec := &recorder{}
	c := newClient(t, base, rec)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	waiting, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "later"},
		RunAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	holding := make(chan struct{})
	hctx, stopHolding := context.WithCancel(ctx)
	defer stopHolding()
	go func() {
		for range c.Watch(hctx, waiting.ID, nil) {
			select {
			case <-holding:
			default:
				close(holding) // the stream is open: its first event came
			}
		}
	}()
	<-holding
	task, err := c.Create(ctx, client.TaskCreate{Type: "echo", Fields: map[string]any{"message": "polled", "sleep_ms": 300}})
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.Wait(ctx, task.ID, &client.WaitOptions{PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != client.StatusCompleted || string(done.Result.Data) != `{"message":"polled"}` {
		t.Errorf("waited for %+v", done)
	}
	refused := false
	for _, s := range rec.requests() {
		refused = refused || s.status == http.StatusTooManyRequests
	}
	if !refused {
		t.Errorf("stream requests %+v: Wait's was not refused", rec.requests())
	}
}
