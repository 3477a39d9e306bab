package sqlstore_test

import (
	"testing"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
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
	s, def := benchEchoStore(b, "postgres")
	ctx := b.Context()
	b.Run("claim", func(b *testing.B) {
		createEchoTasks(b, s, def, 16*b.N, func(t *task.Task) { t.StartTimeoutSeconds = 3600 })
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

// BenchmarkClaimExecutorLimits measures what an executor's concurrency
// limit costs a claim of 16 tasks per op: "plain" claims without limits,
// "capped" with a limit on the tasks' executor that never fills (so both
// claim 16), which counts the executor's running tasks and picks from
// candidates in one transaction. Each op's runs are then completed,
// outside the timing. Compare the two in the same run.
func BenchmarkClaimExecutorLimits(b *testing.B) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		b.Run(dialect, func(b *testing.B) {
			s, def := benchEchoStore(b, dialect)
			ctx := b.Context()
			for _, capped := range []bool{false, true} {
				name, limits := "plain", map[string]int(nil)
				if capped {
					name, limits = "capped", map[string]int{"gpu": 1 << 30}
				}
				b.Run(name, func(b *testing.B) {
					createEchoTasks(b, s, def, 16*b.N, func(t *task.Task) { t.ProviderType = "gpu" })
					b.ResetTimer()
					for range b.N {
						got, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "bench", Limit: 16, Lease: time.Minute, ExecutorLimits: limits})
						if err != nil || len(got) != 16 {
							b.Fatalf("claimed %d tasks: %v", len(got), err)
						}
						// The runs end, as they would under a limit: the
						// running tasks counted stay few.
						b.StopTimer()
						done := make([]store.StatusChange, len(got))
						for i, r := range got {
							done[i] = store.StatusChange{TaskID: r.Task.ID, Scope: store.AdminScope,
								Change: task.Change{To: task.StatusCompleted, Attempt: r.Task.Attempt, Result: []byte(`{}`)}}
						}
						if _, err := s.FinishRuns(ctx, done); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
				})
			}
		})
	}
}
