package generation

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// ArtifactName is the name of the generated image among the task's
// artifacts when the executor is the mock.
const ArtifactName = "image.png"

// Operation is the work a generation task asks its executor for.
const Operation = "text_to_image"

// Output is the result data of a generation task.
type Output struct {
	// Seed is the seed used (given or derived).
	Seed int64 `json:"seed"`
	// Width and Height are the size of the stored image, which the mock
	// provider may have scaled down.
	Width  int `json:"width"`
	Height int `json:"height"`
	// BatchIndex and BatchSize are the image's place in the batch it was
	// made in, when the executor ran the task with others (a ComfyUI
	// prompt of batch_size N); Seed is then the prompt's seed, which with
	// them reproduces the image.
	BatchIndex *int `json:"batch_index,omitempty"`
	BatchSize  int  `json:"batch_size,omitempty"`
}

// Processor runs generation tasks on the executor their provider_type
// names.
type Processor struct {
	executors *executor.Set
	fetcher   *artifact.Fetcher
}

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// DeriveSeed returns the seed of a task that names none: a hash of its id,
// below 2^32 so every provider accepts it, and the same on every attempt.
func DeriveSeed(id uuid.UUID) int64 {
	sum := sha256.Sum256(id[:])
	return int64(binary.BigEndian.Uint32(sum[:4]))
}

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	// A task built in Go may name no executor: the type's default runs it.
	name := cmp.Or(job.Task.ProviderType, ProviderMock)
	// A task stored before validation existed, or built in Go, must not
	// reach the executor with impossible values.
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	// A task that names its seed must get the image of that seed: only
	// derived seeds may run in a batch, whose prompt has one seed.
	derived := f.Seed == nil || *f.Seed == DeriveSeed(job.Task.ID)
	if f.Seed == nil {
		seed := DeriveSeed(job.Task.ID)
		f.Seed = &seed
		if err := job.SaveFields(ctx); err != nil {
			return nil, fmt.Errorf("saving derived seed: %w", err)
		}
	}
	ej, err := executor.FromJob(job, Operation)
	if err != nil {
		return nil, err
	}
	ej.Batchable = derived
	p.keepComfyFields(job, ej)
	if p.fetcher != nil {
		ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
			data, _, err := p.fetcher.Open(ctx, job.Task.OriginTenantID, url)
			return data, err
		}
		ej.OpenInputStream = func(ctx context.Context, url string) (io.ReadCloser, int64, error) {
			return p.fetcher.OpenStream(ctx, job.Task.OriginTenantID, url)
		}
		ej.PresignInput = func(ctx context.Context, url string) (string, bool, error) {
			return p.fetcher.Presign(ctx, job.Task.OriginTenantID, url, artifact.DefaultPresignTTL)
		}
	}
	// The executor reports 0–100 %; the processor keeps the last tenth
	// for storing the result.
	progress := executor.ReporterFunc(func(ctx context.Context, pct float64, stage string) error {
		return job.Progress(ctx, pct*0.9, stage)
	})
	out, err := p.executors.Run(ctx, name, job.Task.ProviderRequested, ej, progress)
	if err != nil {
		return nil, err
	}
	if len(out.Artifacts) == 0 {
		return nil, executor.Errorf(executor.ProviderError, "executor %s returned no image", name)
	}
	art := out.Artifacts[0]
	key := art.Key
	f.ResultImagePath = &key
	if g, ok := out.Data[comfyui.DataWorkflowData].(json.RawMessage); ok {
		// The filled graph the server ran (the original's comfy_workflow_data).
		var graph map[string]any
		if json.Unmarshal(g, &graph) == nil {
			f.ComfyWorkflowData = graph
		}
	}
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	data := Output{Seed: *f.Seed, Width: art.Width, Height: art.Height}
	batchOutput(&data, out.Data)
	return &task.Result{Artifacts: out.Artifacts, Data: data}, nil
}

// batchOutput copies a batch member's place and the batch's seed from an
// executor's result data into o.
func batchOutput(o *Output, data map[string]any) {
	index, ok := data[comfyui.DataBatchIndex].(int)
	size, _ := data[comfyui.DataBatchSize].(int)
	if !ok || size < 1 {
		return
	}
	o.BatchIndex, o.BatchSize = &index, size
	if raw, ok := data[comfyui.DataSeed].(json.RawMessage); ok {
		var seed int64
		if json.Unmarshal(raw, &seed) == nil {
			o.Seed = seed
		}
	}
}

// Resume implements registry.ResumerOf: the run re-attaches to its job
// through the handle its lost run saved (executor.Execute does).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
