package sqlstore_test

import (
	"encoding/json"
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

// benchEchoStore opens a store for the dialect with the echo type.
func benchEchoStore(b *testing.B, dialect string) (*sqlstore.Store, *registry.Definition) {
	b.Helper()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	def, _ := reg.Lookup(echo.Name)
	return testdb.Open(b, dialect, reg), def
}

// createEchoTasks creates n pending echo tasks in s, in batches of 500;
// edit, when set, adjusts each task first.
func createEchoTasks(b *testing.B, s *sqlstore.Store, def *registry.Definition, n int, edit func(*task.Task)) {
	b.Helper()
	recs := make([]*store.Record, 0, 500)
	for created := 0; created < n; created += len(recs) {
		recs = recs[:0]
		for range min(500, n-created) {
			now := task.Now()
			t := &task.Task{
				ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
				QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now, MaxAttempts: 1,
				TimeoutSeconds: 60, Errors: []task.Error{},
			}
			if edit != nil {
				edit(t)
			}
			recs = append(recs, &store.Record{Def: def, Fields: &echo.Fields{Message: "bench"}, Task: t})
		}
		if err := s.CreateTasks(b.Context(), recs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFinishRuns measures the completers' write, on each database:
// one op is FinishRuns of 16 claimed echo tasks, completed (the engine's
// common case). The tasks are created and claimed
// before the timer starts. Compare ns/op and allocs/op with a baseline
// measured in the same run on the same machine.
func BenchmarkFinishRuns(b *testing.B) {
	for _, dialect := range testdb.Dialects {
		b.Run(dialect, func(b *testing.B) {
			const batch = 16
			s, def := benchEchoStore(b, dialect)
			createEchoTasks(b, s, def, batch*b.N, nil)
			ctx := b.Context()
			var claimed []*store.Record
			for len(claimed) < batch*b.N {
				got, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "bench", Limit: 500, Lease: time.Hour})
				if err != nil || len(got) == 0 {
					b.Fatalf("claimed %d tasks: %v", len(got), err)
				}
				claimed = append(claimed, got...)
			}
			result := json.RawMessage(`{"artifacts":[]}`)
			changes := make([]store.StatusChange, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				for j := range changes {
					t := claimed[i*batch+j].Task
					var c store.StatusChange
					c.TaskID, c.Scope = t.ID, store.AdminScope
					c.To, c.Attempt, c.Result = task.StatusCompleted, t.Attempt, result
					changes[j] = c
				}
				errs, err := s.FinishRuns(ctx, changes)
				if err != nil {
					b.Fatal(err)
				}
				for _, e := range errs {
					if e != nil {
						b.Fatal(e)
					}
				}
			}
		})
	}
}

// BenchmarkClaimSQLite measures SQLite's read-first claim: one op claims
// 16 echo tasks, created before the timer starts.
func BenchmarkClaimSQLite(b *testing.B) {
	const batch = 16
	s, def := benchEchoStore(b, "sqlite")
	createEchoTasks(b, s, def, batch*b.N, nil)
	ctx := b.Context()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "bench", Limit: batch, Lease: time.Minute})
		if err != nil || len(got) != batch {
			b.Fatalf("claimed %d tasks: %v", len(got), err)
		}
	}
}
