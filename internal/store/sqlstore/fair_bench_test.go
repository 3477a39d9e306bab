package sqlstore_test

import (
	"slices"
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

// backlog is the big tenant's pending tasks in the fairness benchmarks.
const backlog = 10000

// claimOrders are the claim orders the fairness benchmarks compare: the
// first-come order before fair scheduling (sqlstore.WithFIFOClaim) and the
// fair share between tenants.
var claimOrders = []struct {
	name string
	opts []sqlstore.Option
}{
	{"fifo", []sqlstore.Option{sqlstore.WithFIFOClaim()}},
	{"fair", nil},
}

// fairStore opens a store of the dialect in the claim order opts select,
// holding extra+backlog pending echo tasks of tenant "big" and then 10 of
// tenant "small"; it returns the small tenant's task ids.
func fairStore(b *testing.B, dialect string, extra int, opts []sqlstore.Option) (*sqlstore.Store, []uuid.UUID) {
	b.Helper()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	def, _ := reg.Lookup(echo.Name)
	s := testdb.Open(b, dialect, reg, opts...)
	createEchoTasks(b, s, def, backlog+extra, func(t *task.Task) { t.OriginTenantID = "big" })
	var small []uuid.UUID
	createEchoTasks(b, s, def, 10, func(t *task.Task) {
		t.OriginTenantID = "small"
		small = append(small, t.ID)
	})
	return s, small
}

// finishAll completes the claimed runs.
func finishAll(b *testing.B, s *sqlstore.Store, recs []*store.Record) {
	b.Helper()
	done := make([]store.StatusChange, len(recs))
	for i, r := range recs {
		done[i] = store.StatusChange{TaskID: r.Task.ID, Scope: store.AdminScope,
			Change: task.Change{To: task.StatusCompleted, Attempt: r.Task.Attempt, Result: []byte(`{}`)}}
	}
	if _, err := s.FinishRuns(b.Context(), done); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkFairnessSmallTenant measures, on each database and in each
// claim order, how long a small tenant's 10 tasks take to complete while
// a big tenant has 10,000 pending before them: one op claims 8 tasks at a
// time (an engine of concurrency 8) and completes each batch at once (runs
// that take no time), until the small tenant's 10 are completed. It
// reports that time (small-done-ms) and how many tasks ran until then
// (tasks-before); compare fifo with fair in the same run. Each op sets up
// 10,000 tasks outside the timing: run it with -benchtime=1x.
func BenchmarkFairnessSmallTenant(b *testing.B) {
	for _, dialect := range testdb.Dialects {
		for _, o := range claimOrders {
			b.Run(dialect+"/"+o.name, func(b *testing.B) {
				var took time.Duration
				ran := 0
				for range b.N {
					b.StopTimer()
					s, small := fairStore(b, dialect, 0, o.opts)
					b.StartTimer()
					start, left, n := time.Now(), len(small), 0
					for left > 0 {
						recs, err := s.ClaimTasks(b.Context(), store.ClaimParams{Worker: "bench", Limit: 8, Lease: time.Minute})
						if err != nil || len(recs) == 0 {
							b.Fatalf("claimed %d tasks with the small tenant's %d left: %v", len(recs), left, err)
						}
						finishAll(b, s, recs)
						for _, r := range recs {
							if slices.Contains(small, r.Task.ID) {
								left--
							}
						}
						n += len(recs)
					}
					took += time.Since(start)
					ran += n
					b.StopTimer()
					s.Close()
					b.StartTimer()
				}
				b.ReportMetric(float64(took.Milliseconds())/float64(b.N), "small-done-ms")
				b.ReportMetric(float64(ran)/float64(b.N), "tasks-before")
			})
		}
	}
}

// BenchmarkClaimAtBacklog measures what the fair order costs a claim, on
// each database: one op claims 16 echo tasks with more than 10,000 pending
// (the big tenant's backlog and the small tenant's 10), and completes them
// outside the timing. Compare fair with fifo in the same run: fair/fifo is
// the claim's slowdown.
func BenchmarkClaimAtBacklog(b *testing.B) {
	for _, dialect := range testdb.Dialects {
		for _, o := range claimOrders {
			b.Run(dialect+"/"+o.name, func(b *testing.B) {
				s, _ := fairStore(b, dialect, 16*b.N, o.opts)
				b.ResetTimer()
				for range b.N {
					recs, err := s.ClaimTasks(b.Context(), store.ClaimParams{Worker: "bench", Limit: 16, Lease: time.Minute})
					if err != nil || len(recs) != 16 {
						b.Fatalf("claimed %d tasks: %v", len(recs), err)
					}
					b.StopTimer()
					finishAll(b, s, recs)
					b.StartTimer()
				}
			})
		}
	}
}
