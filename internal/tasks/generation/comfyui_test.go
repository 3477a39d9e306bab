package generation_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// comfySet builds a comfyui executor "gpu" over fake from config entries
// (workflows relative to the config's directory) whose generation
// template is EmptyImage (with batchSize, JSON) → SaveImage named by the
// prompt; batch, when set, is its batch setting.
func comfySet(t *testing.T, fake *comfyfake.Server, batchSize string, batch map[string]any) *executor.Set {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "wf"), 0o755); err != nil {
		t.Fatal(err)
	}
	graph := `{"1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": ` + batchSize + `, "color": 255}},
	           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prompt}}"}}}`
	if err := os.WriteFile(filepath.Join(dir, "wf", "txt2img.json"), []byte(graph), 0o644); err != nil {
		t.Fatal(err)
	}
	s := map[string]any{
		"servers":   []map[string]any{{"url": fake.URL(), "slots": 1}},
		"workflows": "wf", "defaults": map[string]string{"generation": "txt2img"}, "poll_interval": "50ms",
	}
	if batch != nil {
		s["batch"] = batch
	}
	settings, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{"gpu": {Type: "comfyui", Settings: settings, Dir: dir}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestProcessOnComfyUI runs a generation task on a comfyui executor built
// from config entries (workflows relative to the config's directory)
// against the fake server: the type's default template is filled, the
// image lands among the artifacts, and the original's ComfyUI fields are
// kept.
func TestProcessOnComfyUI(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	set := comfySet(t, fake, "1", nil)
	f := valid()
	f.Prompt = "dress"
	job, rt := fakeruntime.NewJob(t, generation.Name, "gpu", f)
	res, err := generation.Type(generation.Config{Executors: set}).Processor.Process(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0].Width != 128 || res.Artifacts[0].Height != 64 {
		t.Fatalf("artifacts %+v, want one 128x64 image", res.Artifacts)
	}
	if f.ComfyPromptID == nil || fake.Stats().Submissions[*f.ComfyPromptID] != 1 {
		t.Errorf("comfy_prompt_id %v is not the prompt the server ran (%v)", f.ComfyPromptID, fake.Stats().Submissions)
	}
	if f.ComfyServerURL == nil || *f.ComfyServerURL != fake.URL() || len(f.ComfyUIRetryServerURLs) != 0 {
		t.Errorf("comfy_server_url %v, retry servers %v", f.ComfyServerURL, f.ComfyUIRetryServerURLs)
	}
	if inputs, _ := f.ComfyWorkflowData["2"].(map[string]any)["inputs"].(map[string]any); inputs["filename_prefix"] != "dress" {
		t.Errorf("comfy_workflow_data %v, want the filled graph", f.ComfyWorkflowData)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
}

// TestBatchOnComfyUI: generation tasks with the same fields and derived
// seeds run as one ComfyUI prompt on an executor that batches, each with
// its own image and its place in the batch in its result; a task that
// names its seed runs alone, with that seed.
func TestBatchOnComfyUI(t *testing.T) {
	t.Parallel()
	fake := comfyfake.StartT(t, comfyfake.Options{})
	set := comfySet(t, fake, `"{{batch_size}}"`, map[string]any{"max_size": 3, "max_wait": "30s"})
	proc := generation.Type(generation.Config{Executors: set}).Processor
	type ran struct {
		res  *task.Result
		seed int64
		err  error
	}
	run := func(seed *int64) <-chan ran {
		f := valid()
		f.Prompt, f.Seed = "dress", seed
		job, _ := fakeruntime.NewJob(t, generation.Name, "gpu", f)
		done := make(chan ran, 1)
		go func() {
			res, err := proc.Process(context.Background(), job)
			done <- ran{res, generation.DeriveSeed(job.Task.ID), err}
		}()
		return done
	}
	explicit := int64(42)
	alone := run(&explicit) // starts at once, not after max_wait
	var batch []<-chan ran
	for range 3 {
		batch = append(batch, run(nil))
	}
	r := <-alone
	if r.err != nil {
		t.Fatal(r.err)
	}
	if out := r.res.Data.(generation.Output); out.Seed != 42 || out.BatchIndex != nil || out.BatchSize != 0 {
		t.Errorf("the task with an explicit seed: %+v, want seed 42 and no batch", out)
	}
	derived := map[int64]bool{}
	seeds, indexes, files := map[int64]bool{}, map[int]bool{}, map[string]bool{}
	for _, c := range batch {
		r := <-c
		if r.err != nil {
			t.Fatal(r.err)
		}
		derived[r.seed] = true
		out := r.res.Data.(generation.Output)
		if out.BatchIndex == nil || out.BatchSize != 3 || len(r.res.Artifacts) != 1 {
			t.Fatalf("a batched task: %+v, %d artifacts", out, len(r.res.Artifacts))
		}
		seeds[out.Seed], indexes[*out.BatchIndex], files[r.res.Artifacts[0].Key] = true, true, true
	}
	if len(seeds) != 1 || len(indexes) != 3 || len(files) != 3 {
		t.Errorf("seeds %v, indexes %v, files %v: want one seed, three places, three files", seeds, indexes, files)
	}
	for s := range seeds {
		if !derived[s] {
			t.Errorf("the batch's seed %d is none of its tasks' derived seeds %v", s, derived)
		}
	}
	if n := len(fake.Stats().Submissions); n != 2 {
		t.Errorf("%d prompts, want 2 (the batch and the task with its own seed)", n)
	}
}
