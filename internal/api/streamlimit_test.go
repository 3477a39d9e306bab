package api_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/api"
	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/stream"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// gatedLog is the store's event log, except that a replay of tenant's
// events from id 0 waits at the gate: a stream stays in its replay as long
// as the test wants.
type gatedLog struct {
	stream.EventLog
	tenant  string
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedLog) ListEvents(ctx context.Context, f store.EventFilter) ([]event.Event, error) {
	if f.Scope.TenantID == g.tenant && f.AfterID == 0 {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.EventLog.ListEvents(ctx, f)
}

// TestStreamLimitsPerKey checks the bounds on one API key's event streams:
// with at most 2 open streams and 1 replay per key, a second concurrent
// replay and a third stream get 429 problems with Retry-After, another key
// is not affected, and a slot is free again once the replay has caught up
// or a stream has closed.
func TestStreamLimitsPerKey(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			log, key, open, base := limitedServer(t, dialect, api.Config{MaxStreamsPerKey: 2, MaxReplaysPerKey: 1})
			acme, other := key("acme"), key("other")
			refused := func(what string, status int, body string, s *sseStream) {
				t.Helper()
				wantRefused(t, what, status, body, s)
			}
			replaying := startGatedReplay(t, log, open, acme)
			s, status, body := open(acme, "Last-Event-ID", "0")
			refused("a second concurrent replay of one key", status, body, s)
			live, status, body := open(acme)
			if status != http.StatusOK {
				t.Fatalf("a live stream beside the replay: status %d (%s), want 200", status, body)
			}
			s, status, body = open(acme)
			refused("a third open stream of one key", status, body, s)
			res, err := http.DefaultClient.Do(mustRequest(t, base+"/api/v1/events", acme))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.Header.Get("Retry-After") == "" || res.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("429 headers %v, want Retry-After and application/problem+json", res.Header)
			}
			if s, status, body := open(other, "Last-Event-ID", "0"); status != http.StatusOK {
				t.Errorf("another key: status %d (%s), want 200", status, body)
			} else {
				s.close()
			}

			// The replay catches up: its slot is free, though its stream
			// stays open.
			close(log.gate)
			live.close()
			waitAccepted(t, func() (*sseStream, int, string) { return open(acme, "Last-Event-ID", "0") })
			replaying.close()
		})
	}
}

// mustRequest is a GET with the Authorization header.
func mustRequest(t *testing.T, url, auth string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", auth)
	return req
}

// waitAccepted retries open until it gets a stream (a closed stream's slot
// is released when its handler returns), failing after 15 s.
func waitAccepted(t *testing.T, open func() (*sseStream, int, string)) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		s, status, body := open()
		if status == http.StatusOK {
			s.close()
			return
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("status %d (%s), want a stream once a slot is free", status, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// limitedServer serves the API with cfg on a loopback port, over a store
// whose replays of tenant "acme" from id 0 wait at log's gate. It returns
// the base URL, a function making a key of a tenant, and a function
// opening a firehose stream.
func limitedServer(t *testing.T, dialect string, cfg api.Config) (log *gatedLog, key func(tenant string) string, open func(auth string, hdr ...string) (*sseStream, int, string), base string) {
	t.Helper()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	st := testdb.Open(t, dialect, reg)
	log = &gatedLog{EventLog: st, tenant: "acme", entered: make(chan struct{}, 1), gate: make(chan struct{})}
	relay := stream.New(stream.Config{}, log, nil, st, testdb.Logger(t))
	if err := relay.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(cfg, api.Deps{
		Store: st, Registry: reg, Events: relay, Logger: testdb.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		relay.Stop() // ends the streams
		_ = hs.Close()
	})
	base = "http://" + ln.Addr().String()
	key = func(tenant string) string {
		k := apikey.Generate()
		if err := st.CreateAPIKey(t.Context(), store.APIKey{ID: uuid.New(), Hash: apikey.Hash(k),
			Prefix: apikey.Display(k), TenantID: tenant, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		return "Bearer " + k
	}
	open = func(auth string, hdr ...string) (*sseStream, int, string) {
		return openStreamAt(t, base, "/api/v1/events", append([]string{"Authorization", auth}, hdr...)...)
	}
	return log, key, open, base
}

// TestReplayLimitPerServer: replays are bounded for every key together,
// so a storm spread over many keys (one per tenant) cannot take the
// process's CPU from creates; the slot frees once the replay catches up.
func TestReplayLimitPerServer(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			log, key, open, _ := limitedServer(t, dialect, api.Config{MaxReplaysPerKey: 4, MaxReplays: 1})
			acme, other := key("acme"), key("other")
			replaying := startGatedReplay(t, log, open, acme)
			s, status, body := open(other, "Last-Event-ID", "0")
			wantRefused(t, "another key's replay while the server's one slot is taken", status, body, s)
			if s, status, body := open(other); status != http.StatusOK {
				t.Errorf("a live stream (no replay) of another key: status %d (%s), want 200", status, body)
			} else {
				s.close()
			}
			close(log.gate)
			waitAccepted(t, func() (*sseStream, int, string) { return open(other, "Last-Event-ID", "0") })
			replaying.close()
		})
	}
}

// wantRefused fails unless a stream was refused with 429.
func wantRefused(t *testing.T, what string, status int, body string, s *sseStream) {
	t.Helper()
	if s != nil {
		s.close()
		t.Fatalf("%s: got a stream, want 429", what)
	}
	if status != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d (%s), want 429", what, status, body)
	}
}

// startGatedReplay opens a replay of tenant acme's events from id 0 with
// auth and returns it once it waits at log's gate, holding its slots.
func startGatedReplay(t *testing.T, log *gatedLog, open func(auth string, hdr ...string) (*sseStream, int, string), auth string) *sseStream {
	t.Helper()
	replaying, status, body := open(auth, "Last-Event-ID", "0")
	if status != http.StatusOK {
		t.Fatalf("first replay: status %d (%s)", status, body)
	}
	select {
	case <-log.entered:
	case <-time.After(15 * time.Second):
		t.Fatal("the first stream never started its replay")
	}
	return replaying
}
