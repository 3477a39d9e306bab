package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/local"
)

// samplePNG is a small valid input image.
func samplePNG(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewNRGBA(image.Rect(0, 0, 8, 6))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHarness runs the executor harness on local. Each executor the
// adapter builds has a job table of its own with one slot: a job dies with
// its process, so recovery reports it lost and the job starts afresh.
func TestHarness(t *testing.T) {
	t.Parallel()
	var behaviours sync.Map // task id -> executortest.Behaviour
	input := samplePNG(t)
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor {
			ex, err := local.New("local", local.Settings{Slots: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ex.Hook = func(ctx context.Context, j *executor.Job) error {
				b, _ := behaviours.Load(j.TaskID)
				if g := b.(executortest.Behaviour).Hold; g != nil {
					g.Running()
					return g.Wait(ctx)
				}
				return nil
			}
			return ex
		},
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			id := uuid.New()
			behaviours.Store(id, b)
			fields, err := json.Marshal(local.AdjustRequest{ImageURL: "https://images.example/in.png", Brightness: 10, Gamma: 1.2, OutputFormat: "jpeg"})
			if err != nil {
				t.Fatal(err)
			}
			return &executor.Job{
				TaskID: id, Type: "image_adjuster", Operation: local.OpAdjustImage, Fields: fields,
				OpenInput: func(context.Context, string) ([]byte, error) {
					switch b.Fail {
					case executor.InvalidInput:
						return []byte("not an image"), nil
					case executor.ProviderUnavailable:
						return nil, errors.New("connect: connection refused")
					}
					return input, nil
				},
			}
		},
		Failures: []executor.Category{executor.InvalidInput, executor.ProviderUnavailable},
		CanQueue: true,
	})
}

// An operation local does not know is invalid input, refused at Start.
func TestUnknownOperation(t *testing.T) {
	t.Parallel()
	ex, err := local.New("local", local.Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ex.Start(t.Context(), &executor.Job{Operation: "upscale", Fields: json.RawMessage(`{"image_url":"https://x/a.png"}`)})
	if !executor.Is(err, executor.InvalidInput) {
		t.Errorf("Start of an unknown operation: %v, want invalid_input", err)
	}
}
