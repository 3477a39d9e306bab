package comfyui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/task"
)

// graphOf is the graph the server ran, from the job's output data.
func graphOf(t *testing.T, out *executor.Output) map[string]map[string]any {
	t.Helper()
	raw, ok := out.Data[comfyui.DataWorkflowData].(json.RawMessage)
	if !ok {
		t.Fatalf("no %s in %+v", comfyui.DataWorkflowData, out.Data)
	}
	var g map[string]map[string]any
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})

	t.Run("fields keep their JSON type, in one pass", func(t *testing.T) {
		// prefix's value looks like a placeholder: it is not replaced again.
		j, rec := newJob(t, map[string]any{"prefix": "{{color}}", "color": 255})
		out, err := executor.Execute(testCtx(t), ex, j, rec)
		if err != nil {
			t.Fatal(err)
		}
		g := graphOf(t, out)
		in1, in2 := g["1"]["inputs"].(map[string]any), g["2"]["inputs"].(map[string]any)
		if in1["width"] != float64(64) || in1["height"] != float64(48) || in1["color"] != float64(255) {
			t.Errorf("EmptyImage inputs %v: want numbers 64, 48, 255", in1)
		}
		if in2["filename_prefix"] != "{{color}}" {
			t.Errorf("filename_prefix %v, want the field's value as is", in2["filename_prefix"])
		}
		if len(out.Artifacts) != 1 || out.Artifacts[0].Width != 64 || out.Artifacts[0].Height != 48 {
			t.Errorf("artifacts %+v, want one 64x48 image", out.Artifacts)
		}
		if out.Data[comfyui.DataWorkflow] != "generation" {
			t.Errorf("workflow %v, want the type's default, generation", out.Data[comfyui.DataWorkflow])
		}
	})

	for _, tt := range []struct {
		name   string
		fields string
		want   string
	}{
		{"missing fields", `{"width":64,"height":64,"color":null}`, "needs field(s) the task lacks: color, prefix"},
		{"unknown workflow", `{"comfy_workflow":"flux"}`, `unknown workflow "flux" (comfy_workflow); the workflows are: batch, edit, generation, invert`},
		{"workflow not a name", `{"comfy_workflow":3}`, "comfy_workflow must be a template name"},
		{"input not a URL", `{"comfy_workflow":"edit","image_url":5,"width":8,"height":8,"prefix":"x"}`, "image_url: an input image must be a URL string"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ex.CheckFields("generation", json.RawMessage(tt.fields))
			if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CheckFields: %v, want invalid input containing %q", err, tt.want)
			}
		})
	}
	if err := ex.CheckFields("generation", json.RawMessage(`{"width":64,"height":64,"color":1,"prefix":"p"}`)); err != nil {
		t.Errorf("CheckFields of complete fields: %v", err)
	}
	if got := submissions(fake); got != 1 {
		t.Errorf("%d prompts submitted, want 1 (refused jobs never reach the server)", got)
	}
}

// pngOf is a w×h PNG.
func pngOf(t *testing.T, w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := range w {
		img.Set(i, 0, color.NRGBA{R: uint8(i), A: 255})
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestUploads: an {{input:field}} image is read once, uploaded to each
// server tried, and the name the server chose is what the graph loads.
func TestUploads(t *testing.T) {
	t.Parallel()
	broken := comfyfake.StartT(t, comfyfake.Options{Faults: comfyfake.Faults{HTTPStatus: 500}})
	good := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(broken.URL(), good.URL()), comfyui.Options{})
	src := pngOf(t, 20, 10)
	// An identical file already sits under the name the executor picks:
	// the server reuses it. A different one under another name is not
	// touched.
	j, rec := newJob(t, map[string]any{"comfy_workflow": "edit", "image_url": "https://example.test/in.png", "width": 40, "height": 24})
	var reads []string
	j.OpenInput = func(_ context.Context, url string) ([]byte, error) {
		reads = append(reads, url)
		return src, nil
	}
	out, err := executor.Execute(testCtx(t), ex, j, rec)
	if err != nil {
		t.Fatal(err)
	}
	if len(reads) != 1 || reads[0] != "https://example.test/in.png" {
		t.Errorf("inputs read %v, want the URL once", reads)
	}
	ups := good.Stats().Uploads
	if len(ups) != 1 || ups[0].Size != len(src) {
		t.Fatalf("uploads to the good server %+v, want the image once", ups)
	}
	if got := graphOf(t, out)["1"]["inputs"].(map[string]any)["image"]; got != ups[0].Name {
		t.Errorf("LoadImage loads %v, want the uploaded name %s", got, ups[0].Name)
	}
	if data, ok := good.File("input", ups[0].Name); !ok || !bytes.Equal(data, src) {
		t.Error("the server does not hold the uploaded bytes")
	}
	if a := out.Artifacts; len(a) != 1 || a[0].Width != 40 || a[0].Height != 24 {
		t.Errorf("artifacts %+v, want one 40x24 image", a)
	}
	errs, _ := out.Data[comfyui.DataServerErrors].([]comfyui.ServerError)
	if len(errs) != 1 || errs[0].Server != broken.URL() || !strings.Contains(errs[0].Error, "upload") {
		t.Errorf("server errors %+v, want the broken server's failed upload", errs)
	}
}

// TestSlots: a server never holds more prompts than its slots, however
// many jobs run at once; two servers share the load.
func TestSlots(t *testing.T) {
	t.Parallel()
	opts := comfyfake.Options{NodeDelay: 20 * time.Millisecond}
	a, b := comfyfake.StartT(t, opts), comfyfake.StartT(t, opts)
	ex := newExecutor(t, fast(a.URL(), b.URL()), comfyui.Options{})
	c := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			j, rec := newJob(t, map[string]any{"color": i})
			_, err := executor.Execute(c, ex, j, rec)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, f := range []*comfyfake.Server{a, b} {
		st := f.Stats()
		if st.MaxQueued != 1 {
			t.Errorf("server %s held up to %d prompts at once, want 1 (one slot)", f.URL(), st.MaxQueued)
		}
		if len(st.Finished) == 0 {
			t.Errorf("server %s ran nothing", f.URL())
		}
	}
	if n := submissions(a, b); n != 8 {
		t.Errorf("%d submissions, want 8", n)
	}
}

// TestFailover: the server running a prompt dies; the prompt is submitted
// to the other server, and the job's data names the dead one.
func TestFailover(t *testing.T) {
	t.Parallel()
	a, b := comfyfake.StartT(t, comfyfake.Options{}), comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(a.URL(), b.URL()), comfyui.Options{})
	a.Pause()
	j, rec := newJob(t, nil)
	var out *executor.Output
	done := make(chan error, 1)
	go func() {
		var err error
		out, err = executor.Execute(testCtx(t), ex, j, rec)
		done <- err
	}()
	waitFor(t, a, "the prompt to run on the first server", func(s comfyfake.Stats) bool { return s.Running != "" })
	a.Kill()
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	if out.Data[comfyui.DataServerURL] != b.URL() || !slices.Equal(out.Data[comfyui.DataRetryServers].([]string), []string{a.URL()}) {
		t.Errorf("ran on %v after %v, want %s after [%s]", out.Data[comfyui.DataServerURL], out.Data[comfyui.DataRetryServers], b.URL(), a.URL())
	}
	errs := out.Data[comfyui.DataServerErrors].([]comfyui.ServerError)
	// Killed while waiting, or while its answer to the submit was on the
	// way (a loaded machine): either way an unavailable server.
	if len(errs) != 1 || errs[0].Server != a.URL() || !strings.Contains(errs[0].Error, "provider_unavailable") {
		t.Errorf("server errors %+v, want the dead server's", errs)
	}
	if h := rec.lastHandle(t); h.Server != b.URL() {
		t.Errorf("last saved handle %+v, want the second server", h)
	}
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0].Message, a.URL()) || rec.errors[0].Category != task.CategoryProviderUnavailable {
		t.Errorf("the task's recorded errors %+v, want one naming the dead server as provider_unavailable", rec.errors)
	}
	if len(rec.files) != 1 {
		t.Errorf("stored %d files, want 1", len(rec.files))
	}

	// With both servers dead, the job fails as unavailable, naming both.
	b.Kill()
	j, rec = newJob(t, nil)
	_, err := executor.Execute(testCtx(t), ex, j, rec)
	if !executor.Is(err, executor.ProviderUnavailable) || !strings.Contains(err.Error(), a.URL()) || !strings.Contains(err.Error(), b.URL()) {
		t.Errorf("with every server down: %v, want provider_unavailable naming both servers", err)
	}
	t.Logf("error with every server down: %v", err)
	if p := ex.Ping(testCtx(t)); !executor.Is(p, executor.ProviderUnavailable) {
		t.Errorf("Ping with every server down: %v", p)
	}
}

// TestExecutionError: a node's exception that is no out-of-memory is the
// job's own problem: invalid input, not tried on the other server.
func TestExecutionError(t *testing.T) {
	t.Parallel()
	faults := comfyfake.Faults{FailClass: "ImageInvert"}
	a, b := comfyfake.StartT(t, comfyfake.Options{Faults: faults}), comfyfake.StartT(t, comfyfake.Options{Faults: faults})
	ex := newExecutor(t, fast(a.URL(), b.URL()), comfyui.Options{})
	j, rec := newJob(t, map[string]any{"comfy_workflow": "invert"})
	_, err := executor.Execute(testCtx(t), ex, j, rec)
	if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "ImageInvert") {
		t.Errorf("err %v, want invalid input naming the node", err)
	}
	if n := submissions(a, b); n != 1 {
		t.Errorf("%d submissions, want 1", n)
	}
}

// TestWebsocketFailures: a websocket that stalls after its first message,
// or that drops mid-run, does not stop the job: /history is polled.
func TestWebsocketFailures(t *testing.T) {
	t.Parallel()
	t.Run("stall", func(t *testing.T) {
		t.Parallel()
		fake := comfyfake.StartT(t, comfyfake.Options{Faults: comfyfake.Faults{StallAfter: 1, HistoryDelay: 100 * time.Millisecond}})
		ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
		j, rec := newJob(t, nil)
		if _, err := executor.Execute(testCtx(t), ex, j, rec); err != nil {
			t.Fatal(err)
		}
		if len(rec.files) != 1 {
			t.Errorf("stored %d files, want 1", len(rec.files))
		}
	})
	t.Run("drop", func(t *testing.T) {
		t.Parallel()
		fake := comfyfake.StartT(t, comfyfake.Options{})
		ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
		fake.Pause()
		j, rec := newJob(t, nil)
		done := execute(ex, j, rec, testCtx(t))
		waitFor(t, fake, "the prompt to run with its socket open", func(s comfyfake.Stats) bool { return s.Running != "" && len(s.Clients) == 1 })
		fake.DropWebsockets()
		fake.Resume()
		if err := result(t, done); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRecover: a prompt that finished while nobody waited is collected
// without a new submission; one the server forgot (it restarted) is lost,
// and Execute submits it again.
func TestRecover(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	c := testCtx(t)

	fake.Pause()
	j, rec := newJob(t, nil)
	h, err := ex.Start(c, j)
	if err != nil {
		t.Fatal(err)
	}
	if saved := rec.lastHandle(t); saved.ExternalID != h.ExternalID || saved.Server != fake.URL() {
		t.Errorf("handle saved before submitting %+v, want the prompt %s", saved, h.ExternalID)
	}
	waitFor(t, fake, "the prompt to run", func(s comfyfake.Stats) bool { return s.Running == h.ExternalID })
	fake.Resume() // it finishes while no process waits
	waitFor(t, fake, "the prompt to finish", func(s comfyfake.Stats) bool { return slices.Contains(s.Finished, h.ExternalID) })

	restarted := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	j.Saved = &h
	if _, err := executor.Execute(c, restarted, j, rec); err != nil {
		t.Fatal(err)
	}
	if n := submissions(fake); n != 1 {
		t.Errorf("%d submissions after recovering a finished prompt, want 1", n)
	}

	// The server restarts while the next prompt, from a third process,
	// is queued: it is lost. (The first process still holds the slot of
	// the prompt it started and never waited for.)
	fake.Pause()
	j, rec = newJob(t, nil)
	if h, err = newExecutor(t, fast(fake.URL()), comfyui.Options{}).Start(c, j); err != nil {
		t.Fatal(err)
	}
	if err := fake.Restart(c); err != nil {
		t.Fatal(err)
	}
	fake.Resume()
	if _, err := restarted.Recover(c, j, h); !executor.Is(err, executor.Lost) || !strings.Contains(err.Error(), fake.URL()) {
		t.Fatalf("Recover of a forgotten prompt: %v, want lost naming the server", err)
	}
	j.Saved = &h
	if _, err := executor.Execute(c, restarted, j, rec); err != nil {
		t.Fatal(err)
	}
	if n := submissions(fake); n != 3 {
		t.Errorf("%d submissions, want 3 (the lost prompt submitted again)", n)
	}
}

// TestCancel: a cancel reaches POST /interrupt with the prompt id while
// it runs and POST /queue {"delete"} while it is queued.
func TestCancel(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	s := fast(fake.URL())
	s.Servers[0].Slots = 2
	ex := newExecutor(t, s, comfyui.Options{})
	c := testCtx(t)
	fake.Pause()
	defer fake.Resume()
	runningJob, rec1 := newJob(t, nil)
	queuedJob, rec2 := newJob(t, nil)
	running, queued := execute(ex, runningJob, rec1, c), execute(ex, queuedJob, rec2, c)
	waitFor(t, fake, "one prompt running, one queued", func(s comfyfake.Stats) bool { return s.Running != "" && len(s.Pending) == 1 })
	st := fake.Stats()
	runID, queuedID := st.Running, st.Pending[0]
	for _, tc := range []struct {
		id string
	}{{queuedID}, {runID}} {
		cancelAt := time.Now()
		if err := ex.Cancel(c, handleOf(t, tc.id, rec1, rec2)); err != nil {
			t.Fatal(err)
		}
		t.Logf("cancel of %s reached the server in %s", tc.id, fakeLatency(fake, tc.id, cancelAt))
	}
	for _, done := range []<-chan error{running, queued} {
		if err := result(t, done); !executor.Is(err, executor.Cancelled) {
			t.Errorf("a cancelled job ended with %v, want cancelled", err)
		}
	}
	st = fake.Stats()
	if len(st.Deletes) != 1 || st.Deletes[0].PromptID != queuedID || !st.Deletes[0].Removed {
		t.Errorf("deletes %+v, want the queued prompt removed", st.Deletes)
	}
	if len(st.Interrupts) != 1 || st.Interrupts[0].PromptID != runID || !st.Interrupts[0].Applied {
		t.Errorf("interrupts %+v, want the running prompt interrupted by id", st.Interrupts)
	}
	if slices.Contains(st.Started, queuedID) {
		t.Error("the cancelled queued prompt ran")
	}
}

// handleOf finds the saved handle of prompt id among the records.
func handleOf(t *testing.T, id string, recs ...*record) executor.Handle {
	t.Helper()
	for _, r := range recs {
		if h := r.lastHandle(t); h.ExternalID == id {
			return h
		}
	}
	t.Fatalf("no handle of prompt %s", id)
	return executor.Handle{}
}

// fakeLatency is how long after at the fake recorded the cancel of id.
func fakeLatency(fake *comfyfake.Server, id string, at time.Time) time.Duration {
	st := fake.Stats()
	for _, i := range st.Interrupts {
		if i.PromptID == id {
			return i.At.Sub(at)
		}
	}
	for _, d := range st.Deletes {
		if d.PromptID == id {
			return d.At.Sub(at)
		}
	}
	return -1
}

// TestRestartDuringRun: the only server restarts while it runs the
// prompt, forgetting it; the job fails as lost (retried afresh by the
// engine), naming the server.
func TestRestartDuringRun(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	c := testCtx(t)
	fake.Pause()
	j, rec := newJob(t, nil)
	done := execute(ex, j, rec, c)
	waitFor(t, fake, "the prompt to run", func(s comfyfake.Stats) bool { return s.Running != "" })
	if err := fake.Restart(c); err != nil {
		t.Fatal(err)
	}
	fake.Resume()
	err := result(t, done)
	// Lost when a poll finds the prompt gone; provider_unavailable when a
	// poll meets the restart's dropped connection first and no other
	// server is left. Either way the job is not resubmitted to the server.
	if !(executor.Is(err, executor.Lost) || executor.Is(err, executor.ProviderUnavailable)) || !strings.Contains(err.Error(), fake.URL()) {
		t.Errorf("err %v, want lost (or provider_unavailable) naming the server", err)
	}
	if n := submissions(fake); n != 1 {
		t.Errorf("%d submissions, want 1 (no other server to move to)", n)
	}
}

// TestProgressFromWebsocket: the running node and its steps, sent on the
// websocket, move the job's progress before it ends.
func TestProgressFromWebsocket(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{Steps: 4, StepDelay: 30 * time.Millisecond, StepClass: "SaveImage"})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	j, rec := newJob(t, nil)
	// The socket is open before the prompt runs: the fake holds it.
	fake.Pause()
	done := execute(ex, j, rec, testCtx(t))
	waitFor(t, fake, "the socket and the running prompt", func(s comfyfake.Stats) bool { return s.Running != "" && len(s.Clients) == 1 })
	fake.Resume()
	if err := result(t, done); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var mid []float64
	for _, p := range rec.progress {
		if p > 0 && p < 95 {
			mid = append(mid, p)
		}
	}
	if len(mid) < 3 || !slices.IsSorted(mid) {
		t.Errorf("progress %v: want several rising reports between the start and the end", rec.progress)
	}
	if !slices.Contains(rec.stages, "running SaveImage (node 2)") {
		t.Errorf("stages %v do not name the running SaveImage node", rec.stages)
	}
}

// TestProviderSecondsFromHistory: the job's service time is its history
// entry's execution_start to execution_success (timestamps in ms), here
// at least the two nodes' delay of the fake.
func TestProviderSecondsFromHistory(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{NodeDelay: 50 * time.Millisecond})
	ex := newExecutor(t, fast(fake.URL()), comfyui.Options{})
	j, rec := newJob(t, nil)
	out, err := executor.Execute(testCtx(t), ex, j, rec)
	if err != nil {
		t.Fatal(err)
	}
	if u := out.Usage; u.ProviderSeconds < 0.1 || u.ProviderSeconds > 60 || u.InputTokens != 0 || u.OutputTokens != 0 {
		t.Errorf("Output.Usage %+v, want the execution's seconds (two nodes of 50 ms)", u)
	}
}
