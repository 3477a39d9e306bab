//go:build unix

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestMain removes the binary the tests built and fails the package when a
// test leaves a goroutine behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	// totalTasks are submitted per test: a fifth before the chaos, the
	// rest in one batch per round, so every round hits busy workers.
	totalTasks = 2000
	// maxSleepMS bounds the echo tasks' random sleep.
	maxSleepMS = 50
	// slowSleep is the sleep of the few slow tasks submitted, ahead of
	// the queue, just before each SIGSTOP, slowPerWorker per worker. The
	// frozen worker's slow runs end while it is frozen and write as soon
	// as it wakes; by then another node has rescued their tasks (within
	// lease plus one maintenance interval, 3.25s at most) and is still
	// running the new attempt, so those late writes meet a live newer
	// attempt: the case the attempt condition exists for. Fast tasks
	// alone are long finished by the time the zombie writes, and the
	// status rule refuses it without the attempt condition.
	slowSleep     = 2500 * time.Millisecond
	slowPerWorker = 6
	// lease is the workers' COMPUTE_LEASE: heartbeats every lease/3,
	// rescue every lease/2 (±25%) on every node.
	lease = 2 * time.Second
	// stopFor is how long a SIGSTOP round freezes a worker: past its
	// lease (at most 2s after its last heartbeat) plus one maintenance
	// interval (at most 1.25s), so another node has rescued its tasks
	// when it wakes and its late writes are those of a zombie.
	stopFor = 4 * time.Second
	// maxResumes is the workers' COMPUTE_MAX_RESUMES. The tasks keep the
	// echo type's max_attempts (1): a run lost with its worker is
	// recovered under the task's resume budget, never by consuming an
	// attempt. Each disruption (a SIGKILL or a SIGSTOP) costs a task at
	// most one recovery, since a task is in one process at a time (a
	// rescuer's SIGTERM hands its tasks back without counting one), so
	// the 12 disruptions leave 8 of 20 recoveries for leases lost to a
	// slow machine: a failed task means the engine counted one loss many
	// times, or spent an attempt on it.
	maxResumes = 20
	// settleTimeout bounds the wait for every task to be terminal after
	// the last round.
	settleTimeout = 60 * time.Second
	// apiKey is the workers' COMPUTE_API_KEY.
	apiKey = "chaos-test-admin-key-0123456789"
)

// action is what one round does to a worker.
type action int

const (
	// sigkill kills a worker with SIGKILL and starts a new process in its
	// place at once.
	sigkill action = iota
	// sigstop freezes the busiest worker with SIGSTOP for stopFor, then
	// lets it continue.
	sigstop
)

// rounds is the chaos schedule, one round a second (a SIGSTOP round
// lasts stopFor): ten SIGKILLs and two SIGSTOPs.
var rounds = []action{sigkill, sigkill, sigkill, sigstop, sigkill, sigkill, sigkill, sigstop, sigkill, sigkill, sigkill, sigkill}

// scenario is one database's chaos test.
type scenario struct {
	// dsn is what the test's own store opens: a postgres:// URL or the
	// SQLite file.
	dsn string
	// vars are the workers' environment.
	vars map[string]string
	// workers is the number of worker processes.
	workers int
	// concurrency is each worker's COMPUTE_WORKERS.
	concurrency int
	// rescuer starts an extra worker while one is frozen, so that another
	// process rescues the frozen worker's tasks (SQLite runs one worker;
	// the rescuer leaves with SIGTERM after the freeze).
	rescuer bool
	// viaAPI creates the tasks through a `compute api` process instead
	// of the test's own store. On SQLite the test's store would be a
	// writer running under -race (make test), where modernc's SQLite is
	// so slow that one batch holds the database's only write lock for
	// seconds, longer than the lease: the worker could not renew its
	// leases, and the test would measure itself.
	viaAPI bool
}

func TestChaosPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: skipped with -short")
	}
	t.Parallel()
	url := testdb.URL(t, "postgres")
	runChaos(t, scenario{
		dsn: url, workers: 3, concurrency: 16,
		vars: map[string]string{"DATABASE_URL": url, "COMPUTE_DATA_DIR": t.TempDir()},
	})
}

func TestChaosSQLite(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: skipped with -short")
	}
	t.Parallel()
	dir := t.TempDir()
	runChaos(t, scenario{
		dsn: filepath.Join(dir, "compute.db"), workers: 1, concurrency: 16, rescuer: true, viaAPI: true,
		vars: map[string]string{"COMPUTE_DATA_DIR": dir, "COMPUTE_ADDR": "127.0.0.1:0"},
	})
}

// runChaos submits totalTasks echo tasks to the scenario's workers while
// the rounds kill, freeze and restart them, waits for every task to end,
// and checks the database and the workers' logs.
func runChaos(t *testing.T, sc scenario) {
	ctx := context.Background()
	begin := time.Now()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1|1))
	t.Logf("seed %d", seed)

	reg, st := openStore(t, sc.dsn)
	def, ok := reg.Lookup(echo.Name)
	if !ok {
		t.Fatalf("the %s type is not registered", echo.Name)
	}

	bin := computeBinary(t)
	vars := map[string]string{
		"COMPUTE_LEASE":          lease.String(),
		"COMPUTE_MAX_RESUMES":    fmt.Sprint(maxResumes),
		"COMPUTE_WORKERS":        fmt.Sprint(sc.concurrency),
		"COMPUTE_SHUTDOWN_GRACE": "1s",
		"COMPUTE_API_KEY":        apiKey,
		// Info, not warn: refused zombie writes are logged at info.
		"COMPUTE_LOG_LEVEL":  "info",
		"COMPUTE_LOG_FORMAT": "json",
	}
	for k, v := range sc.vars {
		vars[k] = v
	}
	c := newCluster(t, bin, vars)
	var (
		api     *apiClient
		apiProc *proc
	)
	if sc.viaAPI {
		apiProc = c.startRole("api", "api")
		addr, _ := apiProc.waitReady(t, 30*time.Second)["addr"].(string)
		api = newAPIClient(addr, apiKey)
		t.Cleanup(api.close)
	}
	slots := make([]*proc, sc.workers)
	for i := range slots {
		slots[i] = c.start(fmt.Sprintf("worker%d", i))
	}
	for _, p := range slots {
		p.waitReady(t, 30*time.Second)
	}
	ready := time.Now()

	submitted := map[uuid.UUID]string{}
	var submitTook, submitMax time.Duration
	submit := func(recs []*store.Record) {
		t.Helper()
		start := time.Now()
		if api == nil {
			if err := st.CreateTasks(ctx, recs); err != nil {
				t.Fatalf("creating %d tasks: %v", len(recs), err)
			}
		} else {
			for _, r := range recs {
				id, err := api.create(ctx, r)
				if err != nil {
					t.Fatalf("%v (after %d tasks)", err, len(submitted))
				}
				r.Task.ID = id
			}
		}
		took := time.Since(start)
		submitTook, submitMax = submitTook+took, max(submitMax, took)
		for _, r := range recs {
			submitted[r.Task.ID] = r.Fields.(*echo.Fields).Message
		}
	}
	submit(newEchoTasks(t, def, totalTasks/5, rng, false))

	kills, stops, lastKilled := 0, 0, -1
	var freezes []freeze
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for r, a := range rounds {
		<-tick.C
		n, slow := (totalTasks-len(submitted))/(len(rounds)-r), 0
		if a == sigstop || a == sigkill {
			// Slow tasks, claimed first, for the frozen or killed worker
			// to hold.
			slow = min(n, slowPerWorker*max(sc.workers, 2))
		}
		submit(append(newEchoTasks(t, def, slow, rng, true), newEchoTasks(t, def, n-slow, rng, false)...))
		// Strike while the batch is being claimed and run.
		time.Sleep(50*time.Millisecond + time.Duration(rng.Int64N(int64(200*time.Millisecond))))
		for _, p := range slots {
			p.checkAlive(t)
		}
		switch a {
		case sigkill:
			// Kill a worker that holds tasks, so that its successor has
			// them to recover at start (a worker killed idle proves
			// nothing about recovery).
			// Not the slot killed last: its successor holds what it
			// recovered, and killing it again and again would spend
			// those tasks' attempts.
			kills++
			i, running := busiest(t, ctx, st, slots, kills, lastKilled)
			for wait := time.Now().Add(2 * time.Second); running == 0 && time.Now().Before(wait); {
				time.Sleep(20 * time.Millisecond)
				i, running = busiest(t, ctx, st, slots, kills, lastKilled)
			}
			lastKilled = i
			slots[i].kill(t)
			slots[i] = c.start(fmt.Sprintf("worker%d", i))
		case sigstop:
			stops++
			// Freeze a worker that holds tasks (on SQLite a worker
			// notices new work only when it polls, once a second).
			i, running := busiest(t, ctx, st, slots, stops, -1)
			for wait := time.Now().Add(2 * time.Second); running == 0 && time.Now().Before(wait); {
				time.Sleep(20 * time.Millisecond)
				i, running = busiest(t, ctx, st, slots, stops, -1)
			}
			p := slots[i]
			t.Logf("round %d: SIGSTOP %s (pid %d) with %d running tasks for %s", r+1, p.name, p.pid(), running, stopFor)
			p.signal(t, syscall.SIGSTOP)
			f := freeze{file: p.name, from: time.Now()}
			var rescuer *proc
			if sc.rescuer {
				rescuer = c.start("rescuer")
			}
			time.Sleep(stopFor)
			p.signal(t, syscall.SIGCONT)
			f.to = time.Now()
			freezes = append(freezes, f)
			if rescuer != nil {
				time.Sleep(300 * time.Millisecond) // the zombie writes while the rescuer still works
				rescuer.waitReady(t, 10*time.Second)
				rescuer.terminate(t, 10*time.Second)
			}
		}
	}
	chaosEnd := time.Now()
	if len(submitted) != totalTasks {
		t.Fatalf("submitted %d tasks, want %d", len(submitted), totalTasks)
	}

	waitTerminal(t, ctx, st, totalTasks, settleTimeout)
	settled := time.Now()
	if apiProc != nil {
		slots = append(slots, apiProc)
	}
	for _, p := range slots {
		p.checkAlive(t)
		p.waitReady(t, 10*time.Second) // SIGTERM before the handler is set would kill it
		p.terminate(t, 10*time.Second)
	}

	sum := verify(t, ctx, st, submitted, c.logs())
	t.Logf("%s: %d tasks, %d processes started, %d SIGKILL, %d SIGSTOP; build %s (shared), start %s, chaos %s, settle %s, check %s, total %s; creating the tasks took %s (longest batch %s)",
		st.Dialect(), totalTasks, c.started(), kills, stops, buildTook.Round(time.Millisecond),
		ready.Sub(begin).Round(time.Millisecond), chaosEnd.Sub(ready).Round(time.Millisecond),
		settled.Sub(chaosEnd).Round(time.Millisecond), time.Since(settled).Round(time.Millisecond),
		time.Since(begin).Round(time.Millisecond), submitTook.Round(time.Millisecond), submitMax.Round(time.Millisecond))
	t.Logf("%s: %d tasks rescued (%d rescues in all, %d by restarted workers at start, max attempt %d); %d late writes refused (\"outcome not recorded\"), %d of them while a newer attempt ran; %d runs stopped on a lost lease; %d events; %d worker error lines, %d deadlocks",
		st.Dialect(), sum.rescued, sum.rescues, sum.recoveredAtStart, sum.maxAttempt, sum.refused, sum.refusedLive, sum.leaseLost, sum.events, sum.errorLines, sum.deadlocks)
	lines := readLog(c.logs())
	for _, f := range freezes {
		t.Logf("%s: while %s was frozen for %s, the other processes recorded %d outcomes and rescued %d tasks",
			st.Dialect(), f.file, f.to.Sub(f.from).Round(time.Millisecond), f.progress(lines, "task attempt recorded"), f.rescued(lines))
	}
}

// openStore opens and migrates the database at dsn for the test, with
// apiKey stored as an admin key, and returns it with its registry of task
// types. Processes started at once with COMPUTE_API_KEY on a database
// without that key race to insert it, and one can exit on the unique
// violation: storing it first keeps the tests about what they test.
func openStore(t *testing.T, dsn string) (*registry.Registry, *sqlstore.Store) {
	t.Helper()
	ctx := context.Background()
	reg, err := app.NewRegistry(app.NewFetcher(config.Default(), nil), nil)
	if err != nil {
		t.Fatalf("registry: %v", err)
	}
	st, err := sqlstore.Open(ctx, dsn, reg, testdb.Logger(t))
	if err != nil {
		t.Fatalf("opening the store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	if err := st.CreateAPIKey(ctx, store.APIKey{
		ID: uuid.New(), Hash: apikey.Hash(apiKey), Prefix: apikey.Display(apiKey), Name: "chaos",
		Admin: true, CreatedAt: time.Now().UTC(),
	}); err != nil {
		t.Fatalf("storing the api key: %v", err)
	}
	return reg, st
}

// freeze is one SIGSTOP of a worker, from SIGSTOP to SIGCONT.
type freeze struct {
	file     string
	from, to time.Time
}

// progress counts the log lines with message msg that processes other than
// the frozen one wrote while it was frozen.
func (f freeze) progress(lines []logLine, msg string) int {
	n := 0
	for _, l := range lines {
		if l.File != f.file && l.Msg == msg && l.Time.After(f.from) && l.Time.Before(f.to) {
			n++
		}
	}
	return n
}

// rescued counts the tasks the other processes rescued while f lasted.
func (f freeze) rescued(lines []logLine) int {
	n := 0
	for _, l := range lines {
		if l.File != f.file && l.Msg == "rescued tasks of lost workers" && l.Time.After(f.from) && l.Time.Before(f.to) {
			n += l.Requeued + l.Resumed + l.Failed
		}
	}
	return n
}

// newEchoTasks builds n echo tasks the way the API does, with a random
// sleep of up to maxSleepMS and the type's max_attempts; slow ones sleep
// slowSleep and come first in the queue.
func newEchoTasks(t *testing.T, def *registry.Definition, n int, rng *rand.Rand, slow bool) []*store.Record {
	t.Helper()
	recs := make([]*store.Record, n)
	for i := range recs {
		now := task.Now()
		id := uuid.Must(uuid.NewV7())
		f := &echo.Fields{Message: "chaos " + id.String(), SleepMS: rng.IntN(maxSleepMS + 1)}
		priority := 0
		if slow {
			f.SleepMS, priority = int(slowSleep/time.Millisecond), 1
		}
		if err := def.PrepareModel(f); err != nil {
			t.Fatalf("echo fields: %v", err)
		}
		recs[i] = &store.Record{Def: def, Fields: f, Task: &task.Task{
			ID: id, Type: def.Name, Status: task.StatusPending,
			ProviderType: def.DefaultProvider, QueueName: def.DefaultQueue, Priority: priority,
			CreatedAt: now, UpdatedAt: now, RunAt: now, Errors: []task.Error{},
			MaxAttempts: def.MaxAttempts, TimeoutSeconds: int(def.Timeout / time.Second),
		}}
	}
	return recs
}

// busiest returns the slot whose process runs the most tasks, so that a
// SIGSTOP or SIGKILL leaves work behind; on a tie, the n-th slot in
// rotation. Slot skip is passed over when there is another.
func busiest(t *testing.T, ctx context.Context, st store.Store, slots []*proc, n, skip int) (int, int) {
	t.Helper()
	page, err := st.ListTasks(ctx, store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusExecuting}, Limit: 500})
	if err != nil {
		t.Fatalf("listing running tasks: %v", err)
	}
	byInstance := map[string]int{}
	for _, r := range page.Records {
		byInstance[r.Task.ExecutorInstance]++
	}
	running := func(p *proc) int {
		if name := p.instance(); name != "" {
			return byInstance[name]
		}
		return 0
	}
	best := n % len(slots)
	if best == skip && len(slots) > 1 {
		best = (best + 1) % len(slots)
	}
	for i, p := range slots {
		if i != skip && running(p) > running(slots[best]) {
			best = i
		}
	}
	return best, running(slots[best])
}

// waitTerminal waits until all n tasks are terminal. It counts the
// terminal statuses, which no task leaves here (nothing retries them), so
// counts taken one after another can only miss a task that has just
// arrived: they never add up to n early. Counting pending and executing
// instead could see neither side of a rescue (executing, then pending)
// and stop while a task still had to run.
func waitTerminal(t *testing.T, ctx context.Context, st store.Store, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	nextLog := time.Now().Add(5 * time.Second)
	for {
		done := 0
		for _, s := range []task.Status{task.StatusCompleted, task.StatusFailed, task.StatusCancelled} {
			done += countStatus(t, ctx, st, s)
		}
		if done == n {
			return
		}
		if done > n {
			t.Fatalf("%d tasks are terminal, but %d were submitted", done, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks are not terminal %s after the last round (%d pending, %d executing)",
				n-done, n, timeout, countStatus(t, ctx, st, task.StatusPending), countStatus(t, ctx, st, task.StatusExecuting))
		}
		if time.Now().After(nextLog) {
			t.Logf("waiting: %d of %d tasks are not terminal", n-done, n)
			nextLog = time.Now().Add(5 * time.Second)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// countStatus counts the echo tasks in a status.
func countStatus(t *testing.T, ctx context.Context, st store.Store, s task.Status) int {
	t.Helper()
	n := 0
	f := store.ListFilter{Scope: store.AdminScope, TaskTypes: []string{echo.Name}, Statuses: []task.Status{s}, Limit: 500}
	for {
		page, err := st.ListTasks(ctx, f)
		if err != nil {
			t.Fatalf("listing %s tasks: %v", s, err)
		}
		n += len(page.Records)
		if page.NextCursor == "" {
			return n
		}
		f.Cursor = page.NextCursor
	}
}
