package cog

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// callbackKinds are the two ways callbacks keep their inboxes: in memory
// and in a task store (SQLite here; both databases pass the store's
// conformance suite).
func callbackKinds(t *testing.T) map[string]func(t *testing.T) *Callbacks {
	return map[string]func(t *testing.T) *Callbacks{
		"memory": func(*testing.T) *Callbacks { return NewCallbacks() },
		"store": func(t *testing.T) *Callbacks {
			return NewSharedCallbacks(testdb.Open(t, "sqlite", registry.New()))
		},
	}
}

// post delivers a webhook to c for token with the bearer auth ("": none)
// and returns the status code.
func post(c *Callbacks, token, auth, body string) int {
	r := httptest.NewRequest(http.MethodPost, CallbackPath+token, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", "Bearer "+auth)
	}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	return w.Code
}

// TestCallbacksFirstTerminalWins: webhooks repeat and arrive out of order
// (reference §5.2, Cog retries its terminal webhook up to 12 times): a
// state after the terminal one is dropped, and each arrival wakes the
// waiter of this process. Once the run has taken the end, a duplicate is
// still answered 200 (idempotent) but its body is gone.
func TestCallbacksFirstTerminalWins(t *testing.T) {
	t.Parallel()
	for name, newCallbacks := range callbackKinds(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			c := newCallbacks(t)
			b := c.box("tok", "secret")
			if err := b.open(ctx); err != nil {
				t.Fatal(err)
			}
			woke := b.changed()
			if code := post(c, "tok", "secret", `{"id":"p","status":"processing","logs":"step 1/2"}`); code != http.StatusOK {
				t.Fatalf("processing: %d", code)
			}
			select {
			case <-woke:
			default:
				t.Fatal("a webhook did not wake the waiter")
			}
			if p, err := b.next(ctx); err != nil || p == nil || p.Logs != "step 1/2" {
				t.Fatalf("next: %+v, %v", p, err)
			}
			if p, err := b.next(ctx); p != nil || err != nil {
				t.Fatalf("next again: %+v, %v; want nothing new", p, err)
			}
			for _, body := range []string{`{"id":"p","status":"succeeded","output":["data:,x"]}`, `{"id":"p","status":"processing"}`, `{"id":"p","status":"failed"}`} {
				if code := post(c, "tok", "secret", body); code != http.StatusOK {
					t.Fatalf("%s: %d", body, code)
				}
			}
			if p, err := b.next(ctx); err != nil || p == nil || p.Status != statusSucceeded {
				t.Errorf("next %+v, %v; want the first terminal state, succeeded", p, err)
			}
			if code := post(c, "tok", "secret", `not json`); code != http.StatusBadRequest {
				t.Errorf("a body that is no prediction: %d, want 400", code)
			}
			b.close(ctx)
			if code := post(c, "tok", "secret", `{"id":"p","status":"succeeded"}`); code != http.StatusOK {
				t.Errorf("a duplicate after the run ended: %d, want 200", code)
			}
			// A run of the same attempt that comes after (a worker
			// restarted before its task was stored) finds the end taken.
			again := c.box("tok", "secret")
			if !again.ended(ctx) {
				t.Error("the closed inbox does not say the prediction ended")
			}
			if _, err := again.next(ctx); !errors.Is(err, errClosed) {
				t.Errorf("next on a closed inbox: %v, want errClosed", err)
			}
			// So does one whose inbox was closed before any message.
			early := c.box("early", "")
			if err := early.open(ctx); err != nil {
				t.Fatal(err)
			}
			early.close(ctx)
			if _, err := c.box("early", "").next(ctx); !errors.Is(err, errClosed) {
				t.Errorf("next on an inbox closed before any message: %v, want errClosed", err)
			}
		})
	}
}

// TestCallbackRefusals: a token no job expects is 404, a wrong or missing
// bearer token 401, an oversized body 413, as RFC 9457 problems.
func TestCallbackRefusals(t *testing.T) {
	t.Parallel()
	for name, newCallbacks := range callbackKinds(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := newCallbacks(t)
			if err := c.box("tok", "secret").open(t.Context()); err != nil {
				t.Fatal(err)
			}
			ok := `{"id":"p","status":"processing"}`
			for _, tt := range []struct {
				name, token, auth, body string
				want                    int
			}{
				{"unknown token", "other", "secret", ok, http.StatusNotFound},
				{"empty token", "", "secret", ok, http.StatusNotFound},
				{"no bearer token", "tok", "", ok, http.StatusUnauthorized},
				{"wrong bearer token", "tok", "secrex", ok, http.StatusUnauthorized},
				{"too large", "tok", "secret", `{"status":"processing","logs":"` + strings.Repeat("x", maxCallback) + `"}`, http.StatusRequestEntityTooLarge},
				{"accepted", "tok", "secret", ok, http.StatusOK},
			} {
				r := httptest.NewRequest(http.MethodPost, CallbackPath+tt.token, strings.NewReader(tt.body))
				if tt.auth != "" {
					r.Header.Set("Authorization", "Bearer "+tt.auth)
				}
				w := httptest.NewRecorder()
				c.ServeHTTP(w, r)
				if w.Code != tt.want {
					t.Errorf("%s: %d, want %d", tt.name, w.Code, tt.want)
				}
				if tt.want != http.StatusOK && w.Header().Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: Content-Type %q, want a problem", tt.name, w.Header().Get("Content-Type"))
				}
			}
		})
	}
}

// TestInboxKeepsNoSecret: the store holds the sha256 of the token and of
// the bearer token, never either.
func TestInboxKeepsNoSecret(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := testdb.Open(t, "sqlite", registry.New())
	c := NewSharedCallbacks(st)
	if err := c.box("tok", "secret").open(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReadInbox(ctx, "tok", 0); !errors.Is(err, store.ErrInboxNotFound) {
		t.Errorf("an inbox named by the raw token: %v", err)
	}
	m, err := st.ReadInbox(ctx, digest("tok"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Auth == "secret" || m.Auth != digest("secret") {
		t.Errorf("auth kept as %q, want the sha256 of the bearer token", m.Auth)
	}
}

// failing is a store.Inbox that cannot be reached.
type failing struct{ store.Inbox }

func (failing) ReadInbox(context.Context, string, int64) (store.InboxMessage, error) {
	return store.InboxMessage{}, errors.New("connection refused")
}

// TestCallbackStoreDown: a webhook that cannot be recorded is 503, which
// Cog retries for its terminal webhook (§3.2).
func TestCallbackStoreDown(t *testing.T) {
	t.Parallel()
	c := NewSharedCallbacks(failing{})
	if code := post(c, "tok", "", `{"status":"succeeded"}`); code != http.StatusServiceUnavailable {
		t.Errorf("store down: %d, want 503", code)
	}
}

// TestInboxExpires: an inbox is forgotten forgetAfter after its last use,
// and a waiting run's reads keep it.
func TestInboxExpires(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := time.Now()
	clock := func() time.Time { return now }
	c := NewCallbacks()
	c.now, c.st = clock, newMemInbox(clock)
	waiting, idle := c.box("waiting", ""), c.box("idle", "")
	for _, b := range []*mailbox{waiting, idle} {
		if err := b.open(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		now = now.Add(forgetAfter / 3)
		if _, err := waiting.next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if code := post(c, "idle", "", `{"status":"processing"}`); code != http.StatusNotFound {
		t.Errorf("an inbox unused for longer than forgetAfter: %d, want 404", code)
	}
	if code := post(c, "waiting", "", `{"status":"processing"}`); code != http.StatusOK {
		t.Errorf("the inbox of a waiting run: %d, want 200", code)
	}
}
