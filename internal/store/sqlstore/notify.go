package sqlstore

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// hub fans notifications out to this process's subscribers. On SQLite it is
// the whole mechanism (one process per database file); on PostgreSQL a
// LISTEN connection feeds it with NOTIFYs from every process.
type hub struct {
	mu   sync.Mutex
	subs map[chan store.Notification]struct{}
}

func (h *hub) publish(n store.Notification) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- n:
		default:
			// A slow subscriber misses hints; the engine also polls and
			// learns about cancellations when it renews leases.
		}
	}
}

// Subscribe implements store.Store.
func (s *Store) Subscribe(ctx context.Context) <-chan store.Notification {
	ch := make(chan store.Notification, 256)
	s.hub.mu.Lock()
	if s.hub.subs == nil {
		s.hub.subs = map[chan store.Notification]struct{}{}
	}
	s.hub.subs[ch] = struct{}{}
	s.hub.mu.Unlock()
	if s.d.caps.ListenNotify {
		s.listenOnce.Do(func() {
			s.listenReady = make(chan struct{})
			// Started by the first subscriber, not by Open: it holds a
			// connection of its own, which only processes that listen need.
			if !s.goBackground(s.listen) {
				s.readyOnce.Do(func() { close(s.listenReady) })
			}
		})
		// Return once LISTEN is in place, so nothing sent after Subscribe
		// returns is missed; if the database cannot be reached, go on (the
		// engine's polls and heartbeats cover for lost notifications).
		select {
		case <-s.listenReady:
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			s.log.Warn("notifications are not established yet; continuing without them")
		}
	}
	go func() {
		<-ctx.Done()
		s.hub.mu.Lock()
		delete(s.hub.subs, ch)
		s.hub.mu.Unlock()
	}()
	return ch
}

// notificationsFor returns what other processes must hear about the
// written changes among cs: a wake-up for work that became pending, a
// cancel for a task whose run was stopped.
func notificationsFor(cs []conditional, written map[uuid.UUID]*task.Task) []store.Notification {
	var out []store.Notification
	wake := false
	for _, c := range cs {
		t := written[c.id]
		switch {
		case t == nil:
		case t.Status == task.StatusPending:
			wake = true
		case t.Status == task.StatusCancelled && c.from == task.StatusExecuting:
			out = append(out, store.Notification{Kind: store.NotifyCancel, TaskID: t.ID})
		}
	}
	if wake {
		out = append(out, store.Notification{Kind: store.NotifyWake})
	}
	return out
}

func encodeNote(n store.Notification) string {
	switch n.Kind {
	case store.NotifyCancel:
		return "c:" + n.TaskID.String()
	case store.NotifyEvents:
		return "e"
	}
	return "w"
}

func decodeNote(payload string) (store.Notification, bool) {
	switch payload {
	case "w":
		return store.Notification{Kind: store.NotifyWake}, true
	case "e":
		return store.Notification{Kind: store.NotifyEvents}, true
	}
	if id, ok := strings.CutPrefix(payload, "c:"); ok {
		if u, err := uuid.Parse(id); err == nil {
			return store.Notification{Kind: store.NotifyCancel, TaskID: u}, true
		}
	}
	return store.Notification{}, false
}

// notifyTx sends notifications inside tx on PostgreSQL, where NOTIFY is
// delivered at commit, so no process hears of a change before it is
// durable. SQLite publishes after commit instead (see published).
func (s *Store) notifyTx(ctx context.Context, tx *txn, notes ...store.Notification) error {
	if !s.d.caps.ListenNotify {
		return nil
	}
	for _, n := range notes {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.channel, encodeNote(n)); err != nil {
			return err
		}
	}
	return nil
}

// published delivers notifications of a committed change to this process
// on SQLite; on PostgreSQL the LISTEN connection does.
func (s *Store) published(notes ...store.Notification) {
	if s.d.caps.ListenNotify {
		return
	}
	for _, n := range notes {
		s.hub.publish(n)
	}
}

// listen keeps a LISTEN connection open until the store is closed,
// reconnecting after failures; after a reconnect it publishes a wake-up,
// since notifications sent meanwhile are lost.
func (s *Store) listen(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnceConn(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("listening for notifications", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (s *Store) listenOnceConn(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return err
	}
	s.readyOnce.Do(func() { close(s.listenReady) })
	s.hub.publish(store.Notification{Kind: store.NotifyWake})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if note, ok := decodeNote(n.Payload); ok {
			s.hub.publish(note)
		}
	}
}
