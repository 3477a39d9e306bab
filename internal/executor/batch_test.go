package executor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// batcher is a test executor that batches jobs by their "key" field. It
// records every Start and StartBatch; a job's output data names its
// handle's external id and batch index.
type batcher struct {
	mu      sync.Mutex
	starts  int
	batches [][]string // the "name" field of each batch's jobs
	// failBatch fails every StartBatch; failMember fails the member with
	// that name only (a *BatchError).
	failBatch  error
	failMember string
	// keyed is told the name of each job BatchKey was asked about.
	keyed chan string
	// cancelled are the handles Cancel was called with.
	cancelled []executor.Handle
	// gate, when set, holds StartBatch until closed; entered is told
	// when StartBatch is called.
	gate    chan struct{}
	entered chan struct{}
}

var (
	_ executor.Executor = (*batcher)(nil)
	_ executor.Batcher  = (*batcher)(nil)
)

func (b *batcher) Name() string { return "gpu" }

func field(job *executor.Job, name string) string {
	var f map[string]string
	_ = json.Unmarshal(job.Fields, &f)
	return f[name]
}

func (b *batcher) BatchKey(job *executor.Job) (string, bool) {
	if b.keyed != nil {
		b.keyed <- field(job, "name")
	}
	k := field(job, "key")
	return k, k != ""
}

func (b *batcher) Start(_ context.Context, job *executor.Job) (executor.Handle, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.starts++
	return executor.Handle{ExternalID: "single-" + field(job, "name"), State: json.RawMessage(`{"index":-1}`)}, nil
}

func (b *batcher) StartBatch(ctx context.Context, jobs []*executor.Job) ([]executor.Handle, error) {
	if b.entered != nil {
		b.entered <- struct{}{}
	}
	if b.gate != nil {
		select {
		case <-b.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = field(j, "name")
	}
	b.batches = append(b.batches, names)
	if b.failBatch != nil {
		return nil, b.failBatch
	}
	id := fmt.Sprintf("batch-%d", len(b.batches))
	hs := make([]executor.Handle, len(jobs))
	errs := make([]error, len(jobs))
	failed := false
	for i, j := range jobs {
		if names[i] == b.failMember {
			errs[i], failed = errors.New("its task was cancelled"), true
			continue
		}
		hs[i] = executor.Handle{ExternalID: id, State: json.RawMessage(fmt.Sprintf(`{"index":%d}`, i))}
		if err := j.SaveHandle(ctx, hs[i]); err != nil {
			return nil, err
		}
	}
	if failed {
		return hs, &executor.BatchError{Errs: errs}
	}
	return hs, nil
}

func (b *batcher) Wait(_ context.Context, _ *executor.Job, h executor.Handle, _ executor.Reporter) (*executor.Output, error) {
	var st struct{ Index int }
	_ = json.Unmarshal(h.State, &st)
	return &executor.Output{Data: map[string]any{"id": h.ExternalID, "index": st.Index}}, nil
}

func (b *batcher) Cancel(_ context.Context, h executor.Handle) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cancelled = append(b.cancelled, h)
	return nil
}

func (b *batcher) Recover(_ context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	return h, nil
}

func (b *batcher) record() (starts int, batches [][]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.starts, append([][]string(nil), b.batches...)
}

// batchSet is a Set with b as its executor "gpu", batching per l.
func batchSet(t *testing.T, b *batcher, l executor.Limits) *executor.Set {
	t.Helper()
	set := executor.NewSet()
	if err := set.Add("test", b); err != nil {
		t.Fatal(err)
	}
	if err := set.SetLimits("gpu", l); err != nil {
		t.Fatal(err)
	}
	return set
}

// outcome is one run's end.
type outcome struct {
	name string
	out  *executor.Output
	err  error
}

// runJob runs a batchable job named name with batch key key on set in a
// goroutine.
func runJob(ctx context.Context, set *executor.Set, name, key string, batchable bool, done chan<- outcome) {
	runJobAs(ctx, set, "", name, key, batchable, done)
}

// runJobAs is runJob for a task of tenant.
func runJobAs(ctx context.Context, set *executor.Set, tenant, name, key string, batchable bool, done chan<- outcome) {
	var saved []executor.Handle
	job := memJob(&saved)
	job.Type = "generation"
	job.Tenant = tenant
	job.Fields, _ = json.Marshal(map[string]string{"name": name, "key": key})
	job.Batchable = batchable
	go func() {
		out, err := set.Run(ctx, "gpu", false, job, quiet)
		done <- outcome{name, out, err}
	}()
}

// collect waits for n outcomes, by name.
func collect(t *testing.T, done <-chan outcome, n int) map[string]outcome {
	t.Helper()
	got := map[string]outcome{}
	for range n {
		select {
		case o := <-done:
			got[o.name] = o
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d of %d runs ended", len(got), n)
		}
	}
	return got
}

func TestBatching(t *testing.T) {
	t.Parallel()
	long := executor.Batching{MaxSize: 3, MaxWait: time.Minute}

	t.Run("max_size reached", func(t *testing.T) {
		t.Parallel()
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{Batch: long})
		done := make(chan outcome, 3)
		for _, n := range []string{"a", "b", "c"} {
			runJob(t.Context(), set, n, "k", true, done)
		}
		got := collect(t, done, 3) // well before the minute of max_wait
		starts, batches := b.record()
		if starts != 0 || len(batches) != 1 || len(batches[0]) != 3 {
			t.Fatalf("%d starts, batches %v; want one batch of 3", starts, batches)
		}
		seen := map[any]bool{}
		for n, o := range got {
			if o.err != nil || o.out.Data["id"] != "batch-1" {
				t.Fatalf("%s: %v, %+v", n, o.err, o.out)
			}
			seen[o.out.Data["index"]] = true
		}
		if len(seen) != 3 {
			t.Errorf("indexes %v, want each member its own", seen)
		}
	})

	t.Run("max_wait fires", func(t *testing.T) {
		t.Parallel()
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{Batch: executor.Batching{MaxSize: 10, MaxWait: 100 * time.Millisecond}})
		done := make(chan outcome, 2)
		begin := time.Now()
		runJob(t.Context(), set, "a", "k", true, done)
		runJob(t.Context(), set, "b", "k", true, done)
		for n, o := range collect(t, done, 2) {
			if o.err != nil {
				t.Fatalf("%s: %v", n, o.err)
			}
		}
		if _, batches := b.record(); len(batches) != 1 || len(batches[0]) != 2 {
			t.Errorf("batches %v, want one of 2", batches)
		}
		if took := time.Since(begin); took < 100*time.Millisecond {
			t.Errorf("the batch started after %s, before its max_wait", took)
		}
	})

	t.Run("a member whose context ends leaves the batch", func(t *testing.T) {
		t.Parallel()
		b := &batcher{keyed: make(chan string, 8)}
		set := batchSet(t, b, executor.Limits{Batch: long})
		done := make(chan outcome, 4)
		ctx, cancel := context.WithCancel(t.Context())
		runJob(ctx, set, "gone", "k", true, done)
		<-b.keyed
		cancel()
		if o := collect(t, done, 1)["gone"]; !errors.Is(o.err, context.Canceled) {
			t.Fatalf("the cancelled member: %v, want context.Canceled", o.err)
		}
		for _, n := range []string{"a", "b", "c"} {
			runJob(t.Context(), set, n, "k", true, done)
		}
		for n, o := range collect(t, done, 3) {
			if o.err != nil {
				t.Fatalf("%s: %v", n, o.err)
			}
		}
		starts, batches := b.record()
		if len(batches) == 1 {
			slices.Sort(batches[0])
		}
		if starts != 0 || len(batches) != 1 || strings.Join(batches[0], ",") != "a,b,c" {
			t.Errorf("%d starts, batches %v; want one batch a,b,c without the member that left", starts, batches)
		}
	})

	t.Run("a member whose context ends while the batch starts", func(t *testing.T) {
		t.Parallel()
		b := &batcher{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
		set := batchSet(t, b, executor.Limits{Batch: executor.Batching{MaxSize: 2, MaxWait: time.Minute}})
		done := make(chan outcome, 2)
		ctx, cancel := context.WithCancel(t.Context())
		runJob(ctx, set, "gone", "k", true, done)
		runJob(t.Context(), set, "stays", "k", true, done)
		<-b.entered // the batch is full and waits on the gate
		cancel()
		if o := collect(t, done, 1)["gone"]; !errors.Is(o.err, context.Canceled) {
			t.Fatalf("the cancelled member: %v, want context.Canceled at once", o.err)
		}
		close(b.gate)
		if o := collect(t, done, 1)["stays"]; o.err != nil || o.out.Data["id"] != "batch-1" {
			t.Fatalf("the other member: %v, %+v", o.err, o.out)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		want := fmt.Sprintf(`{"index":%d}`, slices.Index(b.batches[0], "gone"))
		if len(b.cancelled) != 1 || b.cancelled[0].ExternalID != "batch-1" || string(b.cancelled[0].State) != want {
			t.Errorf("cancelled %+v, want the gone member's handle in batch-1", b.cancelled)
		}
	})

	t.Run("a member whose run lost its claim while the batch starts", func(t *testing.T) {
		t.Parallel()
		// Its handle is not cancelled: the task's new run may re-attach
		// to the job.
		b := &batcher{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
		set := batchSet(t, b, executor.Limits{Batch: executor.Batching{MaxSize: 2, MaxWait: time.Minute}})
		done := make(chan outcome, 2)
		ctx, cancel := context.WithCancelCause(t.Context())
		runJob(ctx, set, "lost", "k", true, done)
		runJob(t.Context(), set, "stays", "k", true, done)
		<-b.entered
		cancel(task.ErrRunLost)
		if o := collect(t, done, 1)["lost"]; o.err == nil {
			t.Fatal("the member whose run lost its claim returned no error")
		}
		close(b.gate)
		if o := collect(t, done, 1)["stays"]; o.err != nil || o.out.Data["id"] != "batch-1" {
			t.Fatalf("the other member: %v, %+v", o.err, o.out)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.cancelled) != 0 {
			t.Errorf("cancelled %+v, want none: the run only lost its claim", b.cancelled)
		}
	})

	t.Run("a StartBatch error reaches every member", func(t *testing.T) {
		t.Parallel()
		b := &batcher{failBatch: executor.Errorf(executor.ProviderUnavailable, "the pool is down")}
		set := batchSet(t, b, executor.Limits{Batch: long})
		done := make(chan outcome, 3)
		for _, n := range []string{"a", "b", "c"} {
			runJob(t.Context(), set, n, "k", true, done)
		}
		for n, o := range collect(t, done, 3) {
			if !executor.Is(o.err, executor.ProviderUnavailable) || !strings.Contains(o.err.Error(), "the pool is down") {
				t.Errorf("%s: %v, want the batch's error", n, o.err)
			}
		}
	})

	t.Run("a member left out of a started batch", func(t *testing.T) {
		t.Parallel()
		b := &batcher{failMember: "b"}
		set := batchSet(t, b, executor.Limits{Batch: long})
		done := make(chan outcome, 3)
		for _, n := range []string{"a", "b", "c"} {
			runJob(t.Context(), set, n, "k", true, done)
		}
		for n, o := range collect(t, done, 3) {
			if (n == "b") != (o.err != nil) {
				t.Errorf("%s: %v", n, o.err)
			}
		}
	})

	t.Run("a batch of one is Start", func(t *testing.T) {
		t.Parallel()
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{Batch: executor.Batching{MaxSize: 4, MaxWait: 20 * time.Millisecond}})
		done := make(chan outcome, 1)
		runJob(t.Context(), set, "a", "k", true, done)
		if o := collect(t, done, 1)["a"]; o.err != nil || o.out.Data["id"] != "single-a" {
			t.Fatalf("%v, %+v; want the single start's handle", o.err, o.out)
		}
		if starts, batches := b.record(); starts != 1 || len(batches) != 0 {
			t.Errorf("%d starts, batches %v", starts, batches)
		}
	})

	t.Run("jobs that cannot batch start alone at once", func(t *testing.T) {
		t.Parallel()
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{Batch: long})
		done := make(chan outcome, 2)
		runJob(t.Context(), set, "explicit seed", "k", false, done)
		runJob(t.Context(), set, "no key", "", true, done)
		for n, o := range collect(t, done, 2) { // long before max_wait
			if o.err != nil || o.out.Data["id"] != "single-"+n {
				t.Errorf("%s: %v, %+v", n, o.err, o.out)
			}
		}
	})

	t.Run("other keys make other batches", func(t *testing.T) {
		t.Parallel()
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{Batch: executor.Batching{MaxSize: 2, MaxWait: 100 * time.Millisecond}})
		done := make(chan outcome, 3)
		runJob(t.Context(), set, "x", "k1", true, done)
		runJob(t.Context(), set, "y", "k2", true, done)
		runJob(t.Context(), set, "z", "k1", true, done)
		got := collect(t, done, 3)
		if got["x"].out.Data["id"] != got["z"].out.Data["id"] || got["y"].out.Data["id"] != "single-y" {
			t.Errorf("x in %v, z in %v, y in %v; want x and z together, y alone",
				got["x"].out.Data["id"], got["z"].out.Data["id"], got["y"].out.Data["id"])
		}
	})

	t.Run("tenants never share a batch", func(t *testing.T) {
		t.Parallel()
		// A batch reads every member's inputs on behalf of one task's
		// tenant: jobs of equal fields but other tenants batch apart.
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{Batch: executor.Batching{MaxSize: 4, MaxWait: 100 * time.Millisecond}})
		done := make(chan outcome, 4)
		for _, n := range []string{"a1", "b1", "a2", "b2"} {
			runJobAs(t.Context(), set, "tenant-"+n[:1], n, "k", true, done)
		}
		for n, o := range collect(t, done, 4) {
			if o.err != nil {
				t.Fatalf("%s: %v", n, o.err)
			}
		}
		_, batches := b.record()
		for _, names := range batches {
			slices.Sort(names)
		}
		slices.SortFunc(batches, func(x, y []string) int { return strings.Compare(x[0], y[0]) })
		if fmt.Sprint(batches) != "[[a1 a2] [b1 b2]]" {
			t.Errorf("batches %v, want one per tenant: [[a1 a2] [b1 b2]]", batches)
		}
	})

	t.Run("one start of the rate per batch", func(t *testing.T) {
		t.Parallel()
		b := &batcher{}
		set := batchSet(t, b, executor.Limits{StartsPerMinute: 1, Batch: long})
		done := make(chan outcome, 6)
		for _, n := range []string{"a", "b", "c"} {
			runJob(t.Context(), set, n, "k", true, done)
		}
		for n, o := range collect(t, done, 3) {
			if o.err != nil {
				t.Errorf("%s: %v (the batch took one start)", n, o.err)
			}
		}
		for _, n := range []string{"d", "e", "f"} {
			runJob(t.Context(), set, n, "k", true, done)
		}
		for n, o := range collect(t, done, 3) {
			var d *task.DeferError
			if !errors.As(o.err, &d) {
				t.Errorf("%s: %v, want the second batch deferred", n, o.err)
			}
		}
		if _, batches := b.record(); len(batches) != 1 {
			t.Errorf("batches %v, want the first only", batches)
		}
	})
}
