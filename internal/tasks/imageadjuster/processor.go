package imageadjuster

import (
	"cmp"
	"context"
	"fmt"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// MaxPixels is the largest input image, in pixels (50 megapixels); the
// local executor enforces it.
const MaxPixels = local.MaxPixels

// Output is the result data of an image_adjuster task.
type Output struct {
	// Width and Height are the size of the image.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Format is the format of the result (png or jpeg).
	Format string `json:"format"`
}

// Processor runs image_adjuster tasks on the executor their provider_type
// names (a `local` one: the built-in Go image operations).
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
	// A task built in Go may name no executor: the type's default runs it.
	name := cmp.Or(job.Task.ProviderType, ProviderLocal)
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	ej, err := executor.FromJob(job, local.OpAdjustImage)
	if err != nil {
		return nil, err
	}
	ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
		data, _, err := p.fetcher.Open(ctx, job.Task.OriginTenantID, url)
		return data, err
	}
	out, err := p.executors.Run(ctx, name, job.Task.ProviderRequested, ej, executor.ReporterFunc(job.Progress))
	if err != nil {
		return nil, err
	}
	if len(out.Artifacts) == 0 {
		return nil, executor.Errorf(executor.ProviderError, "executor %s returned no image", name)
	}
	art := out.Artifacts[0]
	key := art.Key
	f.ResultImagePath = &key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{
		Artifacts: out.Artifacts,
		Data:      Output{Width: art.Width, Height: art.Height, Format: f.OutputFormat},
	}, nil
}

// Resume implements registry.ResumerOf: the run re-attaches through the
// handle its lost run saved, or starts afresh when the job died with its
// process (as a local one does).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
