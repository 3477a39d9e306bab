package storetest

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// testInbox checks store.Inbox, which a store may implement: an inbox
// takes messages until a final one, which stays; a reader sees each new
// message once by its sequence number; an inbox expires, and a closed one
// drops its body and takes nothing more.
func testInbox(t *testing.T, newEnv func(t *testing.T) *env) {
	e := newEnv(t)
	ib, ok := e.s.(store.Inbox)
	if !ok {
		t.Skip("the store keeps no executor inboxes (store.Inbox)")
	}
	later := func() time.Time { return task.Now().Add(time.Hour) }
	name := func() string { return "h-" + uuid.NewString() }

	t.Run("TakesMessagesUntilFinal", func(t *testing.T) {
		t.Parallel()
		ctx, h := t.Context(), name()
		if _, err := ib.ReadInbox(ctx, h, 0); !errors.Is(err, store.ErrInboxNotFound) {
			t.Fatalf("ReadInbox before OpenInbox: %v, want ErrInboxNotFound", err)
		}
		if _, err := ib.PostInbox(ctx, h, []byte("x"), false, later()); !errors.Is(err, store.ErrInboxNotFound) {
			t.Fatalf("PostInbox before OpenInbox: %v, want ErrInboxNotFound", err)
		}
		until := later()
		if err := ib.OpenInbox(ctx, h, "auth-digest", until); err != nil {
			t.Fatal(err)
		}
		m, err := ib.ReadInbox(ctx, h, 0)
		if err != nil || m.Seq != 0 || m.Final || m.Body != nil || m.Auth != "auth-digest" {
			t.Fatalf("a new inbox: %+v, %v", m, err)
		}
		if d := m.ExpiresAt.Sub(until); d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("ExpiresAt %v, want %v", m.ExpiresAt, until)
		}
		post := func(body string, final bool) bool {
			t.Helper()
			ok, err := ib.PostInbox(ctx, h, []byte(body), final, later())
			if err != nil {
				t.Fatalf("PostInbox(%s): %v", body, err)
			}
			return ok
		}
		if !post("one", false) || !post("two", false) {
			t.Fatal("an open inbox refused a message")
		}
		m, err = ib.ReadInbox(ctx, h, 0)
		if err != nil || m.Seq != 2 || string(m.Body) != "two" || m.Final {
			t.Fatalf("after two messages: %+v, %v; want the second, seq 2", m, err)
		}
		if m, err = ib.ReadInbox(ctx, h, 2); err != nil || m.Seq != 2 || m.Body != nil {
			t.Errorf("read after seq 2: %+v, %v; want no body", m, err)
		}
		if !post("end", true) {
			t.Fatal("the final message was refused")
		}
		if post("late", false) || post("end again", true) {
			t.Error("an inbox holding a final message took another")
		}
		m, err = ib.ReadInbox(ctx, h, 2)
		if err != nil || m.Seq != 3 || !m.Final || string(m.Body) != "end" {
			t.Fatalf("after the final message: %+v, %v; want it, seq 3", m, err)
		}
		// Opening again (a worker recovering the run) keeps what arrived.
		if err := ib.OpenInbox(ctx, h, "", later()); err != nil {
			t.Fatal(err)
		}
		if m, err = ib.ReadInbox(ctx, h, 0); err != nil || m.Seq != 3 || !m.Final || string(m.Body) != "end" || m.Auth != "" {
			t.Errorf("reopened: %+v, %v", m, err)
		}
	})

	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		ctx, h := t.Context(), name()
		if err := ib.CloseInbox(ctx, h, later()); err != nil {
			t.Fatalf("closing an inbox that does not exist: %v", err)
		}
		if err := ib.OpenInbox(ctx, h, "", later()); err != nil {
			t.Fatal(err)
		}
		if _, err := ib.PostInbox(ctx, h, bytes.Repeat([]byte("o"), 1<<20), true, later()); err != nil {
			t.Fatal(err)
		}
		if err := ib.CloseInbox(ctx, h, later()); err != nil {
			t.Fatal(err)
		}
		m, err := ib.ReadInbox(ctx, h, 0)
		if err != nil || !m.Final || m.Body != nil || m.Seq != 1 {
			t.Fatalf("closed: %+v, %v; want final, without its body", m, err)
		}
		if ok, err := ib.PostInbox(ctx, h, []byte("dup"), true, later()); ok || err != nil {
			t.Errorf("a post to a closed inbox: %v, %v; want nothing written and no error", ok, err)
		}
		// An open inbox closed before any message takes none after.
		h2 := name()
		if err := ib.OpenInbox(ctx, h2, "", later()); err != nil {
			t.Fatal(err)
		}
		if err := ib.CloseInbox(ctx, h2, later()); err != nil {
			t.Fatal(err)
		}
		if ok, err := ib.PostInbox(ctx, h2, []byte("x"), false, later()); ok || err != nil {
			t.Errorf("a post to an inbox closed before any message: %v, %v", ok, err)
		}
	})

	t.Run("Expires", func(t *testing.T) {
		t.Parallel()
		ctx, h, kept := t.Context(), name(), name()
		if err := ib.OpenInbox(ctx, h, "", task.Now().Add(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if err := ib.OpenInbox(ctx, kept, "", later()); err != nil {
			t.Fatal(err)
		}
		// A post sets the expiry, as an open does.
		if _, err := ib.PostInbox(ctx, kept, []byte("x"), false, task.Now().Add(300*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if _, err := ib.PostInbox(ctx, kept, []byte("y"), false, later()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		if _, err := ib.ReadInbox(ctx, h, 0); !errors.Is(err, store.ErrInboxNotFound) {
			t.Errorf("an expired inbox read: %v, want ErrInboxNotFound", err)
		}
		if _, err := ib.PostInbox(ctx, h, []byte("x"), true, later()); !errors.Is(err, store.ErrInboxNotFound) {
			t.Errorf("a post to an expired inbox: %v, want ErrInboxNotFound", err)
		}
		// Opening it again starts afresh: the expired one was deleted.
		if err := ib.OpenInbox(ctx, h, "", later()); err != nil {
			t.Fatal(err)
		}
		if m, err := ib.ReadInbox(ctx, h, 0); err != nil || m.Seq != 0 {
			t.Errorf("reopened after expiry: %+v, %v; want a new inbox", m, err)
		}
		if m, err := ib.ReadInbox(ctx, kept, 0); err != nil || string(m.Body) != "y" {
			t.Errorf("an inbox whose post set a later expiry: %+v, %v", m, err)
		}
	})

	t.Run("FirstFinalWinsUnderContention", func(t *testing.T) {
		t.Parallel()
		ctx, h := t.Context(), name()
		if err := ib.OpenInbox(ctx, h, "", later()); err != nil {
			t.Fatal(err)
		}
		const posts = 12
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins []string
		)
		for i := range posts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := string(rune('a' + i))
				ok, err := ib.PostInbox(ctx, h, []byte(body), i%2 == 0, later())
				if err != nil {
					t.Errorf("PostInbox: %v", err)
				}
				if ok && i%2 == 0 {
					mu.Lock()
					wins = append(wins, body)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		m, err := ib.ReadInbox(ctx, h, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(wins) != 1 || !m.Final || string(m.Body) != wins[0] {
			t.Errorf("final posts written: %v; the inbox holds %q (final %v); want exactly one, kept", wins, m.Body, m.Final)
		}
	})
}
