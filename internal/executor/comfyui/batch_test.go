package comfyui_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
)

// batchJob is a job of the batchable template: fields shared by the
// batch, its own seed.
func batchJob(t *testing.T, seed int) (*executor.Job, *record) {
	t.Helper()
	j, rec := newJob(t, map[string]any{"comfy_workflow": "batch", "prefix": "batch", "seed": seed})
	j.Batchable = true
	return j, rec
}

// batchJobs are n batch jobs, seeds from seed on.
func batchJobs(t *testing.T, n, seed int) ([]*executor.Job, []*record) {
	t.Helper()
	jobs, recs := make([]*executor.Job, n), make([]*record, n)
	for i := range n {
		jobs[i], recs[i] = batchJob(t, seed+i)
	}
	return jobs, recs
}

// batchingSet is a Set of ex batching up to size jobs for wait.
func batchingSet(t *testing.T, ex *comfyui.Executor, size int, wait time.Duration) *executor.Set {
	t.Helper()
	set := executor.NewSet()
	if err := set.Add(comfyui.Kind, ex); err != nil {
		t.Fatal(err)
	}
	if err := set.SetLimits(ex.Name(), executor.Limits{Batch: executor.Batching{MaxSize: size, MaxWait: wait}}); err != nil {
		t.Fatal(err)
	}
	return set
}

// ran is a job's end.
type ran struct {
	out *executor.Output
	err error
}

// runAll runs each job through set in its own goroutine, with ctxs[i]
// (the test's when nil).
func runAll(t *testing.T, set *executor.Set, jobs []*executor.Job, recs []*record, ctxs []context.Context) []chan ran {
	t.Helper()
	done := make([]chan ran, len(jobs))
	for i, j := range jobs {
		done[i] = make(chan ran, 1)
		c := testCtx(t)
		if ctxs != nil && ctxs[i] != nil {
			c = ctxs[i]
		}
		go func() {
			out, err := set.Run(c, "comfy", false, j, recs[i])
			done[i] <- ran{out, err}
		}()
	}
	return done
}

func await(t *testing.T, c chan ran) ran {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the job did not end")
		return ran{}
	}
}

// TestBatch: four jobs that differ only in their seed become one prompt
// of batch_size 4, which takes one slot; each job stores one image, its
// own file of the batch, and reports its place and the prompt's seed.
func TestBatch(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	slots := comfyui.NewLocalSlots()
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{Slots: slots})
	set := batchingSet(t, ex, 4, time.Minute)
	jobs, recs := batchJobs(t, 4, 1000)
	fake.Pause()
	done := runAll(t, set, jobs, recs, nil) // full long before max_wait
	waitFor(t, fake, "the batch's prompt to run", func(s comfyfake.Stats) bool { return s.Running != "" })
	if n, used := submissions(fake), slots.InUse("comfy", fake.URL()); n != 1 || used != 1 {
		t.Errorf("%d prompts, %d slots taken; want one of each", n, used)
	}
	fake.Resume()
	files := map[string]int{}
	indexes := map[any]bool{}
	var seeds []string
	var shares float64
	for i, c := range done {
		r := await(t, c)
		if r.err != nil {
			t.Fatalf("job %d: %v", i, r.err)
		}
		shares += r.out.Usage.ProviderSeconds
		if i == len(done)-1 {
			// The members' shares of the prompt's execution add up to it.
			id, _ := r.out.Data[comfyui.DataPromptID].(string)
			if total := executionSeconds(t, fake.URL(), id); total <= 0 || math.Abs(shares-total) > 1e-9 {
				t.Errorf("the members report %v provider seconds in all, want the prompt's %v", shares, total)
			}
		}
		if len(r.out.Artifacts) != 1 || len(recs[i].files) != 1 {
			t.Fatalf("job %d stored %d artifacts (%v), want its own image", i, len(r.out.Artifacts), recs[i].files)
		}
		files[r.out.Artifacts[0].Key]++
		indexes[r.out.Data[comfyui.DataBatchIndex]] = true
		if r.out.Data[comfyui.DataBatchSize] != 4 {
			t.Errorf("job %d: batch_size %v", i, r.out.Data[comfyui.DataBatchSize])
		}
		seed, _ := r.out.Data[comfyui.DataSeed].(json.RawMessage)
		seeds = append(seeds, string(seed))
		if g := graphOf(t, r.out); g["1"]["inputs"].(map[string]any)["batch_size"] != float64(4) {
			t.Errorf("job %d: the graph ran %v", i, g["1"]["inputs"])
		}
	}
	names := make([]string, 0, len(files))
	for k := range files {
		names = append(names, k)
	}
	sort.Strings(names)
	if want := "test/batch_00001_.png test/batch_00002_.png test/batch_00003_.png test/batch_00004_.png"; strings.Join(names, " ") != want {
		t.Errorf("artifacts %v, want each job one file of the batch: %s", names, want)
	}
	if len(indexes) != 4 {
		t.Errorf("batch indexes %v, want 0 to 3", indexes)
	}
	slices.Sort(seeds)
	if seeds = slices.Compact(seeds); len(seeds) != 1 || !strings.HasPrefix(seeds[0], "100") {
		t.Errorf("seeds reported %v, want the one the prompt ran with", seeds)
	}
	if n, used := submissions(fake), slots.InUse("comfy", fake.URL()); n != 1 || used != 0 {
		t.Errorf("%d prompts, %d slots taken after the batch; want 1, 0", n, used)
	}
}

// TestBatchKey: jobs differing only in their seed share a key; other
// fields, another template, or a template without {{batch_size}} do not.
func TestBatchKey(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	key := func(fields map[string]any) (string, bool) {
		j, _ := newJob(t, fields)
		return ex.BatchKey(j)
	}
	a, ok := key(map[string]any{"comfy_workflow": "batch", "prefix": "p", "seed": 1})
	b, _ := key(map[string]any{"comfy_workflow": "batch", "prefix": "p", "seed": 2})
	if !ok || a != b {
		t.Errorf("seeds 1 and 2: keys %q, %q (ok %v), want one", a, b, ok)
	}
	if c, _ := key(map[string]any{"comfy_workflow": "batch", "prefix": "p", "seed": 1, "width": 128}); c == a {
		t.Error("another width has the same key")
	}
	if _, ok := key(map[string]any{"prefix": "p", "seed": 1}); ok {
		t.Error("the generation template, without {{batch_size}}, can batch")
	}
	if _, ok := key(map[string]any{"comfy_workflow": "batch", "seed": 1, "prefix": nil}); ok {
		t.Error("fields the template cannot be filled with can batch")
	}
}

// TestBatchCancelledMember: a member cancelled while its batch runs stops
// waiting; the prompt is not interrupted and the others get their images.
// When every member is cancelled, the prompt is.
func TestBatchCancelledMember(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	set := batchingSet(t, ex, 3, time.Minute)
	jobs, recs := batchJobs(t, 3, 7)
	ctxs := make([]context.Context, 3)
	cancels := make([]context.CancelFunc, 3)
	for i := range 3 {
		ctxs[i], cancels[i] = context.WithCancel(testCtx(t))
	}
	fake.Pause()
	done := runAll(t, set, jobs, recs, ctxs)
	waitFor(t, fake, "the batch's prompt to run", func(s comfyfake.Stats) bool { return s.Running != "" })
	id := fake.Stats().Running
	cancels[1]()
	if r := await(t, done[1]); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("the cancelled member: %v", r.err)
	}
	fake.Resume()
	for _, i := range []int{0, 2} {
		if r := await(t, done[i]); r.err != nil || len(r.out.Artifacts) != 1 {
			t.Fatalf("member %d: %v, %+v", i, r.err, r.out)
		}
	}
	st := fake.Stats()
	if len(st.Interrupts) != 0 || len(st.Deletes) != 0 || !slices.Contains(st.Finished, id) {
		t.Errorf("interrupts %v, deletes %v, finished %v: the prompt must run to its end", st.Interrupts, st.Deletes, st.Finished)
	}
	if len(recs[1].files) != 0 {
		t.Errorf("the cancelled member stored %v", recs[1].files)
	}

	// Every member cancelled: the prompt is interrupted.
	jobs, recs = batchJobs(t, 2, 20)
	for i, j := range jobs {
		j.Fields, _ = json.Marshal(map[string]any{"comfy_workflow": "batch", "prefix": "second", "seed": 20 + i, "width": 64, "height": 48, "color": 1})
		ctxs[i], cancels[i] = context.WithCancel(testCtx(t))
	}
	set = batchingSet(t, ex, 2, time.Minute)
	fake.Pause()
	defer fake.Resume()
	done = runAll(t, set, jobs, recs, ctxs[:2])
	waitFor(t, fake, "the second batch to run", func(s comfyfake.Stats) bool { return s.Running != "" && s.Running != id })
	second := fake.Stats().Running
	for i := range 2 {
		cancels[i]()
		if r := await(t, done[i]); r.err == nil {
			t.Log("DBG", r.err)
			t.Fatalf("member %d of the second batch completed after its cancel", i)
		}
	}
	waitFor(t, fake, "the interrupt of the second batch", func(s comfyfake.Stats) bool {
		return slices.ContainsFunc(s.Interrupts, func(x comfyfake.Interrupt) bool { return x.PromptID == second })
	})
}

// TestBatchRecover: the members of a batch started by a process that died
// are recovered by another from their handles: the prompt is not
// submitted again, the members share one slot, and each gets its image.
func TestBatchRecover(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	dead := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	jobs, recs := batchJobs(t, 3, 50)
	fake.Pause()
	defer fake.Resume()
	hs, err := dead.StartBatch(testCtx(t), jobs)
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hs {
		if saved := recs[i].lastHandle(t); saved.ExternalID != hs[0].ExternalID || string(saved.State) != string(h.State) {
			t.Fatalf("member %d saved %+v, want the prompt's handle %+v", i, saved, h)
		}
	}
	waitFor(t, fake, "the prompt to run", func(s comfyfake.Stats) bool { return s.Running == hs[0].ExternalID })

	slots := comfyui.NewLocalSlots()
	restarted := newExecutor(t, fast(fake.URL()), comfyui.Options{Slots: slots}) // one slot
	done := make([]chan ran, len(jobs))
	for i, j := range jobs {
		j.Saved = &hs[i]
		done[i] = make(chan ran, 1)
		go func() {
			out, err := executor.Execute(testCtx(t), restarted, j, recs[i])
			done[i] <- ran{out, err}
		}()
	}
	// Each saves its recovered handle once Recover returned: none may wait
	// for a second slot.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		n := 0
		for _, rec := range recs {
			rec.mu.Lock()
			if len(rec.handles) == 2 {
				n++
			}
			rec.mu.Unlock()
		}
		if n == len(recs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d members recovered", n, len(recs))
		}
	}
	if used := slots.InUse("comfy", fake.URL()); used != 1 {
		t.Errorf("%d slots taken by the recovered members, want their prompt's one", used)
	}
	fake.Resume()
	seen := map[string]bool{}
	for i, c := range done {
		r := await(t, c)
		if r.err != nil {
			t.Fatalf("member %d: %v", i, r.err)
		}
		if r.out.Data[comfyui.DataBatchIndex] != i || len(r.out.Artifacts) != 1 {
			t.Errorf("member %d: index %v, artifacts %+v", i, r.out.Data[comfyui.DataBatchIndex], r.out.Artifacts)
		}
		seen[r.out.Artifacts[0].Key] = true
	}
	if len(seen) != 3 || submissions(fake) != 1 {
		t.Errorf("files %v, %d prompts; want three files of one prompt", seen, submissions(fake))
	}
	if used := slots.InUse("comfy", fake.URL()); used != 0 {
		t.Errorf("%d slots still taken", used)
	}
}

// TestBatchMemberFailsOverAlone: when the server running a batch's prompt
// goes away, each member is submitted again alone, from its own fields,
// to another server, and reports no batch.
func TestBatchMemberFailsOverAlone(t *testing.T) {
	t.Parallel()
	first := comfyfake.StartT(t, comfyfake.Options{})
	second := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(first.URL(), second.URL()), comfyui.Options{})
	set := batchingSet(t, ex, 2, time.Minute)
	jobs, recs := batchJobs(t, 2, 300)
	first.Pause()
	done := runAll(t, set, jobs, recs, nil)
	waitFor(t, first, "the batch to run on the first server", func(s comfyfake.Stats) bool { return s.Running != "" })
	first.Kill()
	for i, c := range done {
		r := await(t, c)
		if r.err != nil {
			t.Fatalf("member %d: %v", i, r.err)
		}
		if r.out.Data[comfyui.DataServerURL] != second.URL() || r.out.Data[comfyui.DataBatchIndex] != nil || len(r.out.Artifacts) != 1 {
			t.Errorf("member %d: data %v, artifacts %d; want its own prompt on the second server", i, r.out.Data, len(r.out.Artifacts))
		}
		if g := graphOf(t, r.out); g["1"]["inputs"].(map[string]any)["batch_size"] != float64(1) {
			t.Errorf("member %d ran %v, want batch_size 1", i, g["1"]["inputs"])
		}
	}
	if n := submissions(second); n != 2 {
		t.Errorf("the second server received %d prompts, want one per member", n)
	}
}

// TestBatchLeavesOutAMemberItCannotSave: a member whose handle cannot be
// saved (its task was cancelled meanwhile) is left out of the prompt; the
// others run as a smaller batch, each in its new place.
func TestBatchLeavesOutAMemberItCannotSave(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	jobs, recs := batchJobs(t, 3, 400)
	stale := errors.New("the run lost its task")
	jobs[1].SaveHandle = func(context.Context, executor.Handle) error { return stale }
	hs, err := ex.StartBatch(testCtx(t), jobs)
	var be *executor.BatchError
	if !errors.As(err, &be) || !errors.Is(be.Errs[1], stale) || be.Errs[0] != nil || be.Errs[2] != nil {
		t.Fatalf("StartBatch: %v, want member 1 left out", err)
	}
	for k, i := range []int{0, 2} {
		out, err := ex.Wait(testCtx(t), jobs[i], hs[i], recs[i])
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		if out.Data[comfyui.DataBatchIndex] != k || out.Data[comfyui.DataBatchSize] != 2 || len(recs[i].files) != 1 {
			t.Errorf("member %d: data %v, files %v; want place %d of 2", i, out.Data, recs[i].files, k)
		}
		if g := graphOf(t, out); g["1"]["inputs"].(map[string]any)["batch_size"] != float64(2) {
			t.Errorf("the prompt ran %v, want batch_size 2", g["1"]["inputs"])
		}
	}
	if n := submissions(fake); n != 1 {
		t.Errorf("%d prompts, want 1", n)
	}
}

// executionSeconds reads the prompt's execution_start to
// execution_success from the server's history (timestamps in ms).
func executionSeconds(t *testing.T, base, promptID string) float64 {
	t.Helper()
	res, err := http.Get(base + "/history/" + promptID)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var h map[string]struct {
		Status struct{ Messages [][]json.RawMessage }
	}
	if err := json.NewDecoder(res.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	at := map[string]int64{}
	for _, m := range h[promptID].Status.Messages {
		var name string
		var data struct{ Timestamp int64 }
		if len(m) == 2 && json.Unmarshal(m[0], &name) == nil && json.Unmarshal(m[1], &data) == nil {
			at[name] = data.Timestamp
		}
	}
	return float64(at["execution_success"]-at["execution_start"]) / 1000
}

// enteredSlots are LocalSlots that say when an Acquire begins.
type enteredSlots struct {
	*comfyui.LocalSlots
	entered chan struct{}
}

func (s *enteredSlots) Acquire(ctx context.Context, executor string, h comfyui.Holder, servers []comfyui.Server) (comfyui.Server, func(), error) {
	s.entered <- struct{}{}
	return s.LocalSlots.Acquire(ctx, executor, h, servers)
}

// TestBatchRecoverSlotFails: of three members of a live prompt recovered
// in one process, the first waits for the prompt's slot and gives up; the
// two recovered meanwhile stay followed, so cancelling one of them leaves
// the prompt to the other instead of interrupting it.
func TestBatchRecoverSlotFails(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	fake.Pause()
	t.Cleanup(fake.Resume)
	c := testCtx(t)
	submitter := newExecutor(t, fast(fake.URL()), comfyui.Options{Slots: comfyui.NewLocalSlots()})
	jobs, recs := batchJobs(t, 3, 700)
	hs, err := submitter.StartBatch(c, jobs)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, fake, "the batch's prompt to run", func(s comfyfake.Stats) bool { return s.Running != "" })

	// The recovering process: its one slot on the server is taken.
	slots := &enteredSlots{LocalSlots: comfyui.NewLocalSlots(), entered: make(chan struct{}, 4)}
	_, free, err := slots.LocalSlots.Acquire(c, "comfy", comfyui.Holder{}, []comfyui.Server{{URL: fake.URL(), Slots: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer free()
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{Slots: slots})
	gaveUp, stop := context.WithCancel(c)
	failed := make(chan error, 1)
	go func() {
		_, err := ex.Recover(gaveUp, jobs[0], hs[0])
		failed <- err
	}()
	<-slots.entered // member 0 waits for the slot
	for i := 1; i < 3; i++ {
		if _, err := ex.Recover(c, jobs[i], hs[i]); err != nil {
			t.Fatalf("recovering member %d: %v", i, err)
		}
	}
	stop()
	if err := <-failed; err == nil {
		t.Fatal("member 0's recovery took a slot that was not free")
	}
	if err := ex.Cancel(c, hs[1]); err != nil {
		t.Fatal(err)
	}
	if s := fake.Stats(); len(s.Interrupts) != 0 || len(s.Deletes) != 0 {
		t.Fatalf("cancelling member 1 interrupted the prompt member 2 still follows: %+v, %+v", s.Interrupts, s.Deletes)
	}
	fake.Resume()
	out, err := ex.Wait(c, jobs[2], hs[2], recs[2])
	if err != nil || len(out.Artifacts) != 1 {
		t.Fatalf("member 2: %v, %+v; want its image", err, out)
	}
}
