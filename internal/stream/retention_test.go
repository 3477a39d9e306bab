package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/stream"
	"github.com/computeserver/compute/internal/testutil/seed"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// countingPruner records every batch the retention asks for.
type countingPruner struct {
	stream.Pruner
	deleted []int
}

func (c *countingPruner) PruneEvents(ctx context.Context, before time.Time, after int64, limit int) (int, int64, error) {
	n, next, err := c.Pruner.PruneEvents(ctx, before, after, limit)
	c.deleted = append(c.deleted, n)
	return n, next, err
}

// TestRetentionDeletesOldEventsInBatches checks COMPUTE_EVENT_RETENTION's
// pass: events older than the retention are deleted in batches of at most
// Batch, and the rest is kept: newer events, every event of a task that is
// still pending or executing, and an event whose webhook delivery is still
// pending (a delivered one goes with its event).
func TestRetentionDeletesOldEventsInBatches(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, dialect)
			ctx, db := t.Context(), testdb.SQL(t, dialect, e.dsn)
			old, now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Now().UTC()
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(seed.InsertTasks(ctx, db, dialect, seed.Tasks{Batch: 1, N: 20, Status: "completed", Start: old, Step: time.Second}))
			must(seed.InsertTasks(ctx, db, dialect, seed.Tasks{Batch: 2, N: 3, Status: "executing", Start: old, Step: time.Second}))
			// ids 1–1000: old events of finished tasks; 1001–1009: old
			// events of running tasks; 1010–1039: recent events.
			must(seed.InsertEvents(ctx, db, dialect, seed.Events{Batch: 1, Tasks: 20, N: 1000, Start: old, Step: time.Second}))
			must(seed.InsertEvents(ctx, db, dialect, seed.Events{Batch: 2, Tasks: 3, N: 9, Start: old.Add(time.Hour), Step: time.Second}))
			must(seed.InsertEvents(ctx, db, dialect, seed.Events{Batch: 1, Tasks: 20, N: 30, Start: now.Add(-time.Minute), Step: time.Millisecond}))
			for _, d := range []struct {
				event  int
				status string
			}{{500, "pending"}, {501, "delivered"}} {
				_, err := db.ExecContext(ctx, `INSERT INTO webhook_deliveries (event_id, task_id, url, status, next_attempt_at, created_at)
					SELECT id, task_id, 'http://127.0.0.1:1/hook', $2, created_at, created_at FROM task_events WHERE id = $1`, d.event, d.status)
				must(err)
			}

			p := &countingPruner{Pruner: e.st}
			r, err := stream.NewRetention(stream.RetentionConfig{Keep: 24 * time.Hour, Batch: 100}, p, testdb.Logger(t))
			must(err)
			n, err := r.Prune(ctx, now)
			must(err)
			if n != 999 {
				t.Errorf("deleted %d events, want 999 (1000 old ones of finished tasks but the one with a pending delivery)", n)
			}
			if len(p.deleted) < 10 {
				t.Errorf("deleted in %d batches %v, want at least 10 of at most 100", len(p.deleted), p.deleted)
			}
			for _, d := range p.deleted {
				if d > 100 {
					t.Errorf("a batch deleted %d events, more than its 100", d)
				}
			}

			evs, err := e.st.ListEvents(ctx, store.EventFilter{Scope: store.AdminScope, Limit: 5000})
			must(err)
			var kept []int64
			for _, ev := range evs {
				kept = append(kept, ev.ID)
			}
			want := []int64{500}
			for id := int64(1001); id <= 1039; id++ {
				want = append(want, id)
			}
			if len(kept) != len(want) {
				t.Fatalf("kept events %v, want %v", kept, want)
			}
			for i := range want {
				if kept[i] != want[i] {
					t.Fatalf("kept events %v, want %v", kept, want)
				}
			}
			var deliveries int
			must(db.QueryRowContext(ctx, `SELECT COUNT(*) FROM webhook_deliveries`).Scan(&deliveries))
			if deliveries != 1 {
				t.Errorf("%d webhook deliveries left, want 1 (the pending one; the delivered one goes with its event)", deliveries)
			}
			if n, err := r.Prune(ctx, now); err != nil || n != 0 {
				t.Errorf("a second pass deleted %d (%v), want 0", n, err)
			}
		})
	}
}
