package queue_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
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
// five leases.
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

// TestOutcomesSurviveOutage makes the database unwritable for 20 s (five
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
		// Long enough that a heartbeat delayed by a loaded machine (CI
		// runs packages side by side) does not let the other engine
		// rescue a live run; the outage is still five of them.
		lease = 4 * time.Second
	)
	ctx := t.Context()
	counter := &runCounter{runs: map[uuid.UUID]int{}}
	reg := registry.New()
	reg.MustRegister(probeType(counter.probe, time.Minute))

	db := newOutageDB(t, dialect, reg)
	open := db.open
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
	db.cut()
	t.Logf("database unwritable for %s", outage)
	time.Sleep(outage)
	db.restore()
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

// outageDB is a test's database that it can make unwritable: PostgreSQL
// behind a loopback proxy the test cuts, or SQLite under an exclusive
// write lock another connection holds.
type outageDB struct {
	t   *testing.T
	dsn string
	reg *registry.Registry
	// cut makes the database unwritable; restore ends that.
	cut, restore func()
}

func newOutageDB(t *testing.T, dialect string, reg *registry.Registry) *outageDB {
	t.Helper()
	ctx := t.Context()
	o := &outageDB{t: t, dsn: testdb.URL(t, dialect), reg: reg}
	switch dialect {
	case "postgres":
		u, err := url.Parse(o.dsn)
		if err != nil {
			t.Fatal(err)
		}
		px := tcpproxy.New(t, u.Host)
		u.Host = px.Addr()
		o.dsn = u.String()
		o.cut, o.restore = px.Cut, px.Restore
	case "sqlite":
		var locker *sql.Conn
		o.cut = func() {
			db, err := sql.Open("sqlite", o.dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if locker, err = db.Conn(ctx); err != nil {
				t.Fatal(err)
			}
			// Wait for the engine's write in progress, as its writes wait.
			if _, err := locker.ExecContext(ctx, "PRAGMA busy_timeout = 30000"); err != nil {
				t.Fatal(err)
			}
			if _, err := locker.ExecContext(ctx, "BEGIN EXCLUSIVE"); err != nil {
				t.Fatalf("locking the database: %v", err)
			}
		}
		o.restore = func() {
			if _, err := locker.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("unlocking the database: %v", err)
			}
			locker.Close()
		}
	}
	return o
}

// open opens a store on the database, closed when the test ends.
func (o *outageDB) open() *sqlstore.Store {
	o.t.Helper()
	st, err := sqlstore.Open(o.t.Context(), o.dsn, o.reg, testdb.Logger(o.t))
	if err != nil {
		o.t.Fatalf("opening the store: %v", err)
	}
	o.t.Cleanup(func() { st.Close() })
	return st
}

// TestShutdownAbandonsUnwritableOutcome stops an engine whose finished
// run's outcome cannot be written: the write is retried until the
// shutdown grace ends, then given up and logged with the task's id; the
// task is left executing at its attempt, for the rescue.
func TestShutdownAbandonsUnwritableOutcome(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			counter := &runCounter{runs: map[uuid.UUID]int{}}
			reg := registry.New()
			reg.MustRegister(probeType(counter.probe, time.Minute))
			db := newOutageDB(t, dialect, reg)
			st := db.open()
			if err := st.Migrate(t.Context()); err != nil {
				t.Fatalf("migrating: %v", err)
			}
			h := &harness{t: t, ctx: t.Context(), st: st, reg: reg}
			id := h.createProbe(probeFields{N: 300}, nil)
			logs := &syncBuffer{}
			log := slog.New(slog.NewJSONHandler(io.MultiWriter(logs, testWriter{t}), nil))
			eng := queue.New(queue.Config{Concurrency: 1, Lease: 2 * time.Second, ShutdownGrace: 2 * time.Second,
				PollInterval: 50 * time.Millisecond}, db.open(), reg, nil, log)
			if err := eng.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(eng.Stop)
			deadline := time.Now().Add(waitLimit)
			for counter.busy.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the task did not start within %s", waitLimit)
				}
				time.Sleep(5 * time.Millisecond)
			}
			db.cut()
			eng.Stop()
			db.restore()
			if !strings.Contains(logs.String(), "outcome abandoned at shutdown") || !strings.Contains(logs.String(), id.String()) {
				t.Errorf("no \"outcome abandoned at shutdown\" line names task %s", id)
			}
			// On SQLite one write waits out the busy timeout (10 s), past
			// the grace; through the proxy a write fails at once.
			if n := strings.Count(logs.String(), "writing outcomes failed; retrying"); n == 0 && dialect == "postgres" {
				t.Errorf("the outcome was not retried during the grace period")
			}
			if tk := h.get(id).Task; tk.Status != task.StatusExecuting || tk.Attempt != 1 {
				t.Errorf("the task is %s at attempt %d; want still executing at 1, for the rescue", tk.Status, tk.Attempt)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testWriter writes log lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// TestRejectedOutcomeAlone has one run return a result PostgreSQL's jsonb
// rejects (a NUL character) in the same batch as five good ones. The
// database answers, so the batch is retried a few times and then written
// one outcome at a time: the good ones complete at their first attempt,
// and the rejected one neither holds its slot forever nor sinks the
// others; it is left to the rescue, which recovers it once
// (MaxResumes 1) and then fails it with category lost. SQLite stores the
// result as text and accepts it, so this is PostgreSQL's alone.
func TestRejectedOutcomeAlone(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	counter := &runCounter{runs: map[uuid.UUID]int{}}
	probe := func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		counter.mu.Lock()
		counter.runs[job.Task.ID]++
		counter.mu.Unlock()
		counter.busy.Add(1)
		<-release // all six finish together, into one batch
		if job.Fields.Label == "poison" {
			return &task.Result{Data: "nul \x00 here"}, nil
		}
		return &task.Result{Data: "ok"}, nil
	}
	h := newHarness(t, "postgres", opts{probe: probe})
	poison := h.createProbe(probeFields{Label: "poison"}, nil)
	var good []uuid.UUID
	for range 5 {
		good = append(good, h.createProbe(probeFields{}, nil))
	}
	h.newEngine(queue.Config{Concurrency: 6, Lease: time.Second, MaxResumes: 1, MaintenanceInterval: 100 * time.Millisecond}, nil)
	deadline := time.Now().Add(waitLimit)
	for counter.busy.Load() < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for the six runs", waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	for _, id := range good {
		if tk := h.waitStatus(id, task.StatusCompleted).Task; tk.Attempt != 1 {
			t.Errorf("good task %s completed at attempt %d, want 1", id, tk.Attempt)
		}
	}
	tk := h.waitStatus(poison, task.StatusFailed).Task
	if tk.ErrorCategory != task.CategoryLost || tk.ResumeAttemptCount != 1 || tk.RetryCount != 0 {
		t.Errorf("the rejected task failed with %s, resume_attempt_count %d, retry_count %d; want lost, 1, 0",
			tk.ErrorCategory, tk.ResumeAttemptCount, tk.RetryCount)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	for _, id := range good {
		if n := counter.runs[id]; n != 1 {
			t.Errorf("good task %s ran %d times, want 1", id, n)
		}
	}
	if n := counter.runs[poison]; n != 2 {
		t.Errorf("the rejected task ran %d times, want 2 (its first run and one recovery)", n)
	}
}
