package training_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// script is the example training script shipped in the repository.
const script = "../../../examples/training/train_lora.py"

// needPython skips the test without python3, except in CI, where the
// script must run.
func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 is needed to run %s: %v", script, err)
		}
		t.Skipf("python3 is not installed: %v", err)
	}
}

// trainer builds a set with one command executor, "train", that runs the
// example script on stateDir, with extra arguments.
func trainer(t *testing.T, stateDir string, extra ...string) *executor.Set {
	t.Helper()
	needPython(t)
	abs, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	argv := append([]string{abs, "--fields", "{{fields_file}}", "--images", "{{input:images_data_url}}",
		"--out", "{{output_dir}}", "--work", "{{work_dir}}", "--checkpoint", "{{checkpoint}}", "--checkpoint-every", "5"}, extra...)
	ex, err := command.New("train", command.Settings{Command: argv, StateDir: stateDir, GraceSeconds: 1}, command.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ex.Close)
	set := executor.NewSet()
	if err := set.Add(command.Kind, ex); err != nil {
		t.Fatal(err)
	}
	return set
}

// commandJob is a training job of 20 steps on the "train" executor whose
// archive is stored in its runtime's store.
func commandJob(t *testing.T) (*registry.Job[training.Fields], *fakeruntime.Runtime) {
	t.Helper()
	f := valid()
	f.Steps, f.TriggerWord = 20, ptr("TOK")
	job, rt := fakeruntime.NewJob(t, training.Name, "train", f)
	f.ImagesDataURL = storeInput(t, rt, "uploads/set.zip", training.ExampleDataset(3))
	return job, rt
}

func processWith(t *testing.T, set *executor.Set, job *registry.Job[training.Fields], rt *fakeruntime.Runtime) (*task.Result, error) {
	t.Helper()
	p := training.Type(training.Config{Executors: set, Fetcher: &artifact.Fetcher{Store: rt.Store}}).Processor
	return p.Process(context.Background(), job)
}

func TestCommandTraining(t *testing.T) {
	t.Parallel()
	job, rt := commandJob(t)
	res, err := processWith(t, trainer(t, t.TempDir()), job, rt)
	if err != nil {
		t.Fatal(err)
	}
	f, out := job.Fields, res.Data.(training.Output)
	if f.WeightsURL == nil || !strings.HasSuffix(*f.WeightsURL, "/pytorch_lora_weights.safetensors") || out.WeightsURL != *f.WeightsURL {
		t.Fatalf("weights %v, output %+v", f.WeightsURL, out)
	}
	if out.StartStep == nil || *out.StartStep != 0 {
		t.Errorf("start step %s, want 0", step(out.StartStep))
	}
	h := safetensorsHeader(t, readArtifact(t, rt, *f.WeightsPath))
	if !strings.Contains(string(h["__metadata__"]), `"steps":"20"`) {
		t.Errorf("metadata %s", h["__metadata__"])
	}
	var cfg struct {
		Images, Captions int
		TriggerWord      string `json:"trigger_word"`
	}
	if err := json.Unmarshal(readArtifact(t, rt, strings.TrimPrefix(*f.ConfigURL, artifact.PathPrefix)), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Images != 3 || cfg.Captions != 3 || cfg.TriggerWord != "TOK" {
		t.Errorf("config %+v", cfg)
	}
	// The result lists the weights and the configuration, not the
	// checkpoints, which are stored apart (checkpoints/…).
	if len(res.Artifacts) != 2 {
		t.Errorf("artifacts %+v", res.Artifacts)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
	var stages []string
	for _, c := range rt.ProgressCalls() {
		stages = append(stages, c.Stage)
	}
	if !strings.Contains(strings.Join(stages, ","), "step 10/20") {
		t.Errorf("stages %v", stages)
	}
}

func TestCommandTrainingRefusesBadArchive(t *testing.T) {
	t.Parallel()
	job, rt := commandJob(t)
	job.Fields.ImagesDataURL = storeInput(t, rt, "uploads/bad.zip", []byte("not a zip"))
	_, err := processWith(t, trainer(t, t.TempDir()), job, rt)
	if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "not a zip archive") {
		t.Fatalf("got %v, want invalid_input (exit 2) naming the archive", err)
	}
}

// lastCheckpoint returns the checkpoint the job's last saved handle names.
func lastCheckpoint(t *testing.T, rt *fakeruntime.Runtime) (json.RawMessage, string) {
	t.Helper()
	hs := rt.Handles()
	if len(hs) == 0 {
		t.Fatal("no handle was saved")
	}
	h, err := executor.ParseHandle(hs[len(hs)-1])
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Checkpoint struct{ Key string } `json:"checkpoint"`
	}
	if err := json.Unmarshal(h.State, &st); err != nil {
		t.Fatal(err)
	}
	return hs[len(hs)-1], st.Checkpoint.Key
}

// TestRetryResumesFromCheckpoint: an attempt that fails at step 12, after
// its checkpoint of step 10, is retried from step 10, and the weights are
// the same as those of a run that never failed.
func TestRetryResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	set := trainer(t, state, "--fail-at-step", "12", "--fail-on-attempt", "1")
	job, rt := commandJob(t)
	_, err := processWith(t, set, job, rt)
	if !executor.Is(err, executor.ProviderError) || !strings.Contains(err.Error(), "fell over at step 12") {
		t.Fatalf("first attempt: %v, want a provider_error at step 12", err)
	}
	if _, key := lastCheckpoint(t, rt); !strings.HasSuffix(key, "checkpoints/step-000010.json") {
		t.Fatalf("last checkpoint %q, want step 10's", key)
	}
	// The engine's retry: the same task, the next attempt, no handle.
	job.Task.Attempt = 2
	job.Task.ExecutorHandle = nil
	before := len(rt.ProgressCalls())
	res, err := processWith(t, set, job, rt)
	if err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	out := res.Data.(training.Output)
	if out.StartStep == nil || *out.StartStep != 10 {
		t.Fatalf("the retry started at step %s, want 10 (the last checkpoint)", step(out.StartStep))
	}
	for _, c := range rt.ProgressCalls()[before:] {
		if strings.HasPrefix(c.Stage, "step 1/") || strings.HasPrefix(c.Stage, "step 10/") {
			t.Errorf("a stage %q: the retry ran step 1 again", c.Stage)
		}
	}

	whole, wholeRT := commandJob(t)
	if _, err := processWith(t, trainer(t, t.TempDir()), whole, wholeRT); err != nil {
		t.Fatal(err)
	}
	resumed, uninterrupted := readArtifact(t, rt, *job.Fields.WeightsPath), readArtifact(t, wholeRT, *whole.Fields.WeightsPath)
	if string(resumed) != string(uninterrupted) {
		t.Error("the resumed training's weights differ from an uninterrupted one's")
	}
}

// TestRecoveryResumesFromCheckpoint: a run whose worker died (another
// worker, another state directory: no local copy) is handed the saved
// handle, downloads the checkpoint it names and starts from its step.
func TestRecoveryResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	job, rt := commandJob(t)
	_, err := processWith(t, trainer(t, t.TempDir(), "--fail-at-step", "17"), job, rt)
	if err == nil {
		t.Fatal("the first run did not fail")
	}
	handle, key := lastCheckpoint(t, rt)
	if !strings.HasSuffix(key, "checkpoints/step-000015.json") {
		t.Fatalf("last checkpoint %q, want step 15's", key)
	}
	// The rescued task: resumed, with the lost run's handle, on a worker
	// that never saw it.
	job.Task.IsResumed, job.Task.ExecutorHandle = true, handle
	res, err := processWith(t, trainer(t, t.TempDir()), job, rt)
	if err != nil {
		t.Fatalf("recovered run: %v", err)
	}
	if out := res.Data.(training.Output); out.StartStep == nil || *out.StartStep != 15 {
		t.Fatalf("the recovered run started at step %s, want 15", step(out.StartStep))
	}
}

// step prints a reported start step.
func step(n *int) string {
	if n == nil {
		return "(not reported)"
	}
	return strconv.Itoa(*n)
}
