package queue_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/tcpproxy"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// outage is how long the database is unwritable in TestOutcomesSurviveOutage:
// ten leases.
const outage = 20 * time.Second

// runCounter counts the runs of each task.
type runCounter struct {
	mu   sync.Mutex
	runs map[uuid.UUID]int
	busy atomic.Int64
}

// probe is a processor that counts its runs and sleeps job.Fields.N ms.
func (c *runCounter) probe(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
	c.mu.Lock()
	c.runs[job.Task.ID]++
	c.mu.Unlock()
	c.busy.Add(1)
	defer c.busy.Add(-1)
	select {
	case <-time.After(time.Duration(job.Fields.N) * time.Millisecond):
		return &task.Result{Data: "ok"}, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// TestOutcomesSurviveOutage makes the database unwritable for 20 s (ten
// leases) while two engines run 80 tasks, most of which finish during the
// outage: PostgreSQL behind a loopback proxy the test cuts, SQLite under
// an exclusive write lock another connection holds. Every outcome is kept
// and written when the database returns, the leases are kept alive, and
// no rescue runs a task again: every task completes, exactly once, at its
// first attempt.
func TestOutcomesSurviveOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("outage test: skipped with -short")
	}
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			testOutcomesSurviveOutage(t, dialect)
		})
	}
}

func testOutcomesSurviveOutage(t *testing.T, dialect string) {
	const (
		tasks = 80
		lease = 2 * time.Second
	)
	ctx := t.Context()
	counter := &runCounter{runs: map[uuid.UUID]int{}}
	reg := registry.New()
	reg.MustRegister(probeType(counter.probe, time.Minute))

	// cut makes the database unwritable; restore ends that.
	var cut, restore func()
	dsn := testdb.URL(t, dialect)
	switch dialect {
	case "postgres":
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		px := tcpproxy.New(t, u.Host)
		u.Host = px.Addr()
		dsn = u.String()
		cut, restore = px.Cut, px.Restore
	case "sqlite":
		var locker *sql.Conn
		cut = func() {
			db, err := sql.Open("sqlite", dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if locker, err = db.Conn(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := locker.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
				t.Fatalf("locking the database: %v", err)
			}
		}
		restore = func() {
			if _, err := locker.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("unlocking the database: %v", err)
			}
			locker.Close()
		}
	}
	open := func() *sqlstore.Store {
		st, err := sqlstore.Open(ctx, dsn, reg, testdb.Logger(t))
		if err != nil {
			t.Fatalf("opening the store: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st := open()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	h := &harness{t: t, ctx: ctx, st: st, reg: reg}
	ids := make([]uuid.UUID, tasks)
	for i := range ids {
		// 1 s to 9 s: the runs under way at the cut end during it.
		ids[i] = h.createProbe(probeFields{N: 1000 + i*100}, nil)
	}
	for i := range 2 {
		h.newEngine(queue.Config{
			Instance: fmt.Sprintf("node%d", i), Concurrency: 16, Lease: lease,
			MaintenanceInterval: 250 * time.Millisecond, PollInterval: 100 * time.Millisecond,
			ShutdownGrace: 30 * time.Second,
		}, open())
	}
	deadline := time.Now().Add(waitLimit)
	for counter.busy.Load() < 32 {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for 32 running tasks; %d run", waitLimit, counter.busy.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cut()
	t.Logf("database unwritable for %s", outage)
	time.Sleep(outage)
	restore()
	t.Log("database back")

	deadline = time.Now().Add(90 * time.Second)
	for _, id := range ids {
		for {
			tk := h.get(id).Task
			if tk.Status.Terminal() {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s is still %s 90s after the outage", id, tk.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	twice := 0
	for _, id := range ids {
		tk := h.get(id).Task
		if n := counter.runs[id]; n != 1 {
			twice++
			t.Errorf("task %s ran %d times", id, n)
		}
		if tk.Status != task.StatusCompleted || tk.Attempt != 1 || len(tk.Errors) != 0 {
			t.Errorf("task %s is %s at attempt %d with errors %+v; want completed at its first attempt", id, tk.Status, tk.Attempt, tk.Errors)
		}
	}
	if twice > 0 {
		t.Errorf("%d of %d tasks ran more than once", twice, tasks)
	}
}
