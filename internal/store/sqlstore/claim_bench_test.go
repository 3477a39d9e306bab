package sqlstore_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// BenchmarkClaimStartDeadline measures, on PostgreSQL, what checking start
// deadlines costs a claim, which now fails the overdue tasks it skips in
// its own transaction: "claim" claims 16 echo tasks per op (the check
// included, nothing overdue), "check" runs the check alone
// (FailStartTimeouts with nothing overdue, in a transaction of its own, so
// an upper bound of what it adds inside the claim's). Compare the two in
// the same run: check/claim bounds the claim's slowdown. (On SQLite the
// check runs only when the claim read an overdue task.)
func BenchmarkClaimStartDeadline(b *testing.B) {
	reg := registry.New()
	reg.MustRegister(echo.Type())
	s := testdb.Open(b, "postgres", reg)
	def, _ := reg.Lookup(echo.Name)
	ctx := b.Context()
	b.Run("claim", func(b *testing.B) {
		recs := make([]*store.Record, 0, 500)
		for created := 0; created < 16*b.N; created += len(recs) {
			recs = recs[:0]
			for range min(500, 16*b.N-created) {
				now := task.Now()
				recs = append(recs, &store.Record{Def: def, Fields: &echo.Fields{Message: "bench"}, Task: &task.Task{
					ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
					QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now, MaxAttempts: 1,
					TimeoutSeconds: 60, StartTimeoutSeconds: 3600, Errors: []task.Error{},
				}})
			}
			if err := s.CreateTasks(ctx, recs); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for range b.N {
			got, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "bench", Limit: 16, Lease: time.Minute})
			if err != nil || len(got) != 16 {
				b.Fatalf("claimed %d tasks: %v", len(got), err)
			}
		}
	})
	b.Run("check", func(b *testing.B) {
		for range b.N {
			if n, err := s.FailStartTimeouts(ctx, 16); err != nil || n != 0 {
				b.Fatalf("failed %d tasks: %v", n, err)
			}
		}
	})
}
