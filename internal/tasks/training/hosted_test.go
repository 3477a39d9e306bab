package training_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// hostedSet builds one executor of kind named kind from settings, as the
// config file would.
func hostedSet(t *testing.T, kind string, settings map[string]any) *executor.Set {
	t.Helper()
	raw, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{kind: {Type: kind, Settings: raw}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestFalTraining: on fal, the task's fields are fal-ai/flux-lora-fast-
// training's input as they are (the archive, one of our artifacts, handed
// over inline), and the trainer's diffusers_lora_file becomes the weights
// and its config_file the configuration.
func TestFalTraining(t *testing.T) {
	t.Parallel()
	fake := falfake.NewServer(falfake.Config{Keys: []string{"id:secret"}})
	t.Cleanup(fake.Close)
	set := hostedSet(t, "fal", map[string]any{
		"key": "id:secret", "base_url": fake.URL, "storage_url": fake.URL, "cdn_url": fake.URL,
		"model": "fal-ai/flux/dev", "models": map[string]string{"training": falfake.TrainingModel}, "poll_interval": "10ms",
	})
	f := valid()
	f.Steps, f.TriggerWord, f.IsStyle = 500, ptr("TOK"), true
	job, rt := fakeruntime.NewJob(t, training.Name, "fal", f)
	f.ImagesDataURL = storeInput(t, rt, "uploads/set.zip", training.ExampleDataset(2))
	p := training.Type(training.Config{Executors: set, Fetcher: &artifact.Fetcher{Store: rt.Store}}).Processor
	res, err := p.Process(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	subs := fake.Submissions()
	if len(subs) != 1 || subs[0].Model != falfake.TrainingModel {
		t.Fatalf("submissions %+v", subs)
	}
	var in map[string]any
	if err := json.Unmarshal(subs[0].Input, &in); err != nil {
		t.Fatal(err)
	}
	if u, _ := in["images_data_url"].(string); !strings.HasPrefix(u, "data:application/zip;base64,") {
		t.Errorf("images_data_url sent as %.60q, want the archive inline", u)
	}
	for k, want := range map[string]any{"steps": 500.0, "trigger_word": "TOK", "create_masks": true, "is_style": true, "is_input_format_already_preprocessed": false} {
		if in[k] != want {
			t.Errorf("input %s = %v, want %v", k, in[k], want)
		}
	}
	for _, k := range []string{"weights_url", "weights_path", "config_url"} {
		if _, ok := in[k]; ok {
			t.Errorf("input has our output field %s", k)
		}
	}
	if !strings.HasSuffix(*f.WeightsURL, ".safetensors") || !strings.HasSuffix(*f.ConfigURL, ".json") {
		t.Errorf("weights %s, config %s", *f.WeightsURL, *f.ConfigURL)
	}
	safetensorsHeader(t, readArtifact(t, rt, *f.WeightsPath))
	if out := res.Data.(training.Output); out.WeightsURL != *f.WeightsURL || out.StartStep != nil {
		t.Errorf("output %+v", out)
	}
}

// TestReplicateTraining: on Replicate, a trainer model whose output is one
// URL (model-specific, §3.1) gives the weights, whatever the file's type.
func TestReplicateTraining(t *testing.T) {
	t.Parallel()
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-tar")
		w.Write([]byte("trained weights, tarred"))
	}))
	t.Cleanup(files.Close)
	fake, err := replicatefake.NewServer(replicatefake.Config{Token: "r8_token", Outcome: func(replicatefake.Create) replicatefake.Outcome {
		return replicatefake.Outcome{Output: files.URL + "/trained_model.tar"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	set := hostedSet(t, "replicate", map[string]any{
		"token": "r8_token", "base_url": fake.URL, "model": "black-forest-labs/flux-schnell",
		"models": map[string]string{"training": "ostris/flux-dev-lora-trainer"}, "poll_interval": "10ms",
	})
	f := valid()
	f.ImagesDataURL = "https://example.com/set.zip" // public: passed as it is
	job, rt := fakeruntime.NewJob(t, training.Name, "replicate", f)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := training.Type(training.Config{Executors: set}).Processor.Process(ctx, job); err != nil {
		t.Fatal(err)
	}
	created := fake.Creates()
	if len(created) != 1 || created[0].Model != "ostris/flux-dev-lora-trainer" || !strings.Contains(string(created[0].Body), `"images_data_url":"https://example.com/set.zip"`) {
		t.Fatalf("creates %+v", created)
	}
	if !strings.HasSuffix(*f.WeightsURL, ".tar") || f.ConfigURL != nil {
		t.Errorf("weights %s, config %v", *f.WeightsURL, f.ConfigURL)
	}
	if got := string(readArtifact(t, rt, *f.WeightsPath)); got != "trained weights, tarred" {
		t.Errorf("weights %q", got)
	}
}
