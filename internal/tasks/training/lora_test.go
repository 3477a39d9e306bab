package training_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/tasks/training"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// loraSeen is what a generation job's executor saw of its subject LoRA.
type loraSeen struct {
	path   string
	weight float64
	data   []byte
}

// TestWeightsFeedGeneration: a training's weights_url, given to a
// generation task as subject_model_path, reaches the generation's executor
// (a mock whose hook stands for the model loading the LoRA), which reads
// exactly the trained file through the job's input reader.
func TestWeightsFeedGeneration(t *testing.T) {
	t.Parallel()
	seen := make(chan loraSeen, 1)
	ex, err := mock.New("mock", mock.Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ex.Hook = func(ctx context.Context, j *executor.Job) error {
		if j.Type != generation.Name {
			return nil
		}
		var f struct {
			Path   string  `json:"subject_model_path"`
			Weight float64 `json:"subject_lora_weight"`
		}
		if err := json.Unmarshal(j.Fields, &f); err != nil {
			return err
		}
		if j.OpenInput == nil {
			return errors.New("the generation job cannot read its inputs")
		}
		data, err := j.OpenInput(ctx, f.Path)
		if err != nil {
			return err
		}
		seen <- loraSeen{path: f.Path, weight: f.Weight, data: data}
		return nil
	}
	set := executor.NewSet()
	if err := set.Add(mock.Kind, ex); err != nil {
		t.Fatal(err)
	}

	tf := valid()
	tf.Steps = 20
	tjob, trt := fakeruntime.NewJob(t, training.Name, "mock", tf)
	tf.ImagesDataURL = storeInput(t, trt, "uploads/set.zip", training.ExampleDataset(2))
	// The server's artifacts, read by every task type's fetcher.
	fetcher := &artifact.Fetcher{Store: trt.Store}
	if _, err := training.Type(training.Config{Executors: set, Fetcher: fetcher}).Processor.Process(context.Background(), tjob); err != nil {
		t.Fatalf("training: %v", err)
	}
	weights := readArtifact(t, trt, *tf.WeightsPath)

	gf := &generation.Fields{
		Prompt: "TOK wearing a linen summer dress", Width: 64, Height: 64, NumInferenceSteps: 28, GuidanceScale: 3.5,
		SubjectModelPath: tf.WeightsURL, SubjectLoraWeight: 0.8, ProductLoraWeight: 1, StyleLoraWeight: 1,
		Product2LoraWeight: 1, ReferenceImageStrength: 0.5,
	}
	gjob, _ := fakeruntime.NewJob(t, generation.Name, "mock", gf)
	res, err := generation.Type(generation.Config{Executors: set, Fetcher: fetcher}).Processor.Process(context.Background(), gjob)
	if err != nil {
		t.Fatalf("generation: %v", err)
	}
	if len(res.Artifacts) != 1 {
		t.Fatalf("generation artifacts %+v", res.Artifacts)
	}
	select {
	case got := <-seen:
		if got.path != *tf.WeightsURL || got.weight != 0.8 {
			t.Errorf("the generation's executor got LoRA %q at %g, want %q at 0.8", got.path, got.weight, *tf.WeightsURL)
		}
		if !bytes.Equal(got.data, weights) {
			t.Errorf("the LoRA read (%d bytes) is not the trained weights (%d bytes)", len(got.data), len(weights))
		}
	default:
		t.Fatal("the generation's executor never saw the LoRA")
	}
}
