package sqlstore_test

import (
	"context"
	"database/sql"
	"math"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// newEchoStore opens a store for the dialect with one pending echo task.
func newEchoStore(t *testing.T, dialect string) (*sqlstore.Store, uuid.UUID) {
	t.Helper()
	s, ids := newEchoStoreN(t, dialect, 1)
	return s, ids[0]
}

// newEchoStoreN opens a store for the dialect with n pending echo tasks,
// created in this order.
func newEchoStoreN(t *testing.T, dialect string, n int) (*sqlstore.Store, []uuid.UUID) {
	t.Helper()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	s := testdb.Open(t, dialect, reg)
	def, _ := reg.Lookup(echo.Name)
	ids := make([]uuid.UUID, n)
	for i := range ids {
		now := task.Now()
		tk := &task.Task{
			ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
			QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now, MaxAttempts: 1,
			TimeoutSeconds: 60, Errors: []task.Error{},
		}
		if _, _, err := s.CreateTask(t.Context(), &store.Record{Task: tk, Fields: &echo.Fields{Message: "hi"}, Def: def}); err != nil {
			t.Fatalf("CreateTask: %v", err)
		}
		ids[i] = tk.ID
	}
	return s, ids
}

// writable fails unless the task can still be changed within a few
// seconds: no transaction holds the writer or the row.
func writable(t *testing.T, s *sqlstore.Store, id uuid.UUID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, _, err := s.SetStatus(ctx, store.StatusChange{TaskID: id, Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
		t.Fatalf("SetStatus after the failed write: %v (a transaction was left open)", err)
	}
}

// TestPanicInTransactionRollsBack checks that a panic inside a write
// transaction rolls it back, releasing SQLite's only writer and
// PostgreSQL's row locks.
func TestPanicInTransactionRollsBack(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s, id := newEchoStore(t, dialect)
			func() {
				defer func() {
					if p := recover(); p != "boom" {
						t.Errorf("recovered %v, want the panic \"boom\" to propagate", p)
					}
				}()
				_ = s.InTx(t.Context(), func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(t.Context(), `UPDATE tasks SET stage = 'inside' WHERE id = $1`, id.String()); err != nil {
						t.Errorf("update inside the transaction: %v", err)
					}
					panic("boom")
				})
			}()
			writable(t, s, id)
			rec, err := s.GetTask(t.Context(), id, store.AdminScope)
			if err != nil {
				t.Fatalf("GetTask: %v", err)
			}
			if rec.Task.Stage == "inside" {
				t.Error("the panicking transaction's update was committed")
			}
		})
	}
}

// TestSetProgressRefusesNaN checks that a NaN progress is refused with an
// error on both dialects (PostgreSQL would store it, and then no event
// body could be encoded) and leaves the task writable.
func TestSetProgressRefusesNaN(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s, id := newEchoStore(t, dialect)
			recs, err := s.ClaimTasks(t.Context(), store.ClaimParams{Worker: "w", Limit: 1, Lease: time.Minute})
			if err != nil || len(recs) != 1 {
				t.Fatalf("ClaimTasks: %d tasks, %v", len(recs), err)
			}
			for _, emit := range []bool{false, true} {
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("SetProgress(NaN, emit=%v) panicked: %v", emit, p)
						}
					}()
					ev, err := s.SetProgress(t.Context(), store.ProgressUpdate{TaskID: id, Attempt: 1, Progress: math.NaN(), Lease: time.Minute, Emit: emit})
					if err == nil || ev != nil {
						t.Errorf("SetProgress(NaN, emit=%v) = %v, %v; want an error", emit, ev, err)
					}
				}()
			}
			rec, err := s.GetTask(t.Context(), id, store.AdminScope)
			if err != nil {
				t.Fatalf("GetTask: %v", err)
			}
			if math.IsNaN(rec.Task.Progress) || rec.Task.Progress != 0 {
				t.Errorf("progress = %g after refused updates, want 0", rec.Task.Progress)
			}
			writable(t, s, id)
		})
	}
}
