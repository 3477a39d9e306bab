package editing

import (
	"cmp"
	"context"
	"fmt"
	"io"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Output is the result data of an editing task.
type Output struct {
	// Width and Height are the edited image's size, when known.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// References is how many reference images went with the instruction.
	References int `json:"references"`
	// Model is the model that edited, when the executor says.
	Model string `json:"model,omitempty"`
}

// Processor runs editing tasks on the executor their provider_type names.
type Processor struct {
	fetcher   *artifact.Fetcher
	executors *executor.Set
}

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	name := cmp.Or(job.Task.ProviderType, ProviderGemini)
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	ej, err := executor.FromJob(job, Operation)
	if err != nil {
		return nil, err
	}
	tenant := job.Task.OriginTenantID
	ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
		data, _, err := p.fetcher.Open(ctx, tenant, url)
		return data, err
	}
	ej.OpenInputStream = func(ctx context.Context, url string) (io.ReadCloser, int64, error) {
		return p.fetcher.OpenStream(ctx, tenant, url)
	}
	progress := executor.ReporterFunc(func(ctx context.Context, pct float64, stage string) error {
		return job.Progress(ctx, pct*0.95, stage)
	})
	out, err := p.executors.Run(ctx, name, job.Task.ProviderRequested, ej, progress)
	if err != nil {
		return nil, err
	}
	if len(out.Artifacts) == 0 {
		return nil, executor.Errorf(executor.ProviderError, "executor %s returned no image", name)
	}
	// The last image is the edit: ComfyUI graphs may save intermediates
	// first, gemini's answer ends with it.
	art := out.Artifacts[len(out.Artifacts)-1]
	key := art.Key
	f.ResultImagePath = &key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving the result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	res := Output{Width: art.Width, Height: art.Height, References: len(f.ReferenceImageURLs)}
	res.Model, _ = out.Data["model"].(string)
	if res.Model == "" {
		res.Model, _ = out.Data["model_version"].(string)
	}
	return &task.Result{Artifacts: out.Artifacts, Data: res}, nil
}

// Resume implements registry.ResumerOf: the run re-attaches through the
// handle its lost run saved (a ComfyUI prompt, a fal request), or calls
// again (a synchronous gemini or openai call died with its process).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
