// Package detailenhancer is the original's `detail_enhancer` task type: an
// image with sharper detail at its own size. On the local models of `make
// models` (executor models-tf) it super-resolves the image ×2 with ESRGAN
// and resamples the result back to the original size (Lanczos): the edges
// and texture the network reconstructs survive the downscale, the blur of
// the original does not. strength blends the result with the original.
package detailenhancer

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/imagetask"
)

// Name is the task type name.
const Name = "detail_enhancer"

// Operation is the executor operation the type asks for.
const Operation = "enhance_details"

// DefaultProvider is the executor a task naming none runs on.
const DefaultProvider = executors.ModelsTF

// MaxPixels is the largest input, in pixels (4 megapixels): the network
// works on four times as many.
const MaxPixels = 4_000_000

// Fields are the detail_enhancer type's own columns (table
// detail_enhancer_tasks).
type Fields struct {
	ImageURL string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image to enhance: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP, at most 4 megapixels."`
	Strength float64 `json:"strength" required:"false" db:"strength" minimum:"0" maximum:"1" default:"0.7" doc:"How much of the enhanced image the result holds; the rest is the original (0: unchanged)."`

	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the enhanced image (PNG, the input's size)."`
}

// Update is the PATCH body of a pending detail_enhancer task.
type Update struct {
	ImageURL *string  `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	Strength *float64 `json:"strength,omitempty" minimum:"0" maximum:"1"`
}

// Validate implements registry.Validator.
func (f *Fields) Validate() error {
	if err := imagetask.CheckURL("image_url", f.ImageURL, false); err != nil {
		return err
	}
	if f.Strength < 0 || f.Strength > 1 {
		return &registry.FieldError{Field: "strength", Message: fmt.Sprintf("must be between 0 and 1, is %g", f.Strength)}
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the detail_enhancer task type; fetcher reads the input
// images, executors are the configured executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, set *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if set == nil {
		set = executors.Default()
	}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "Detail enhancer",
		Description:     "Sharpens an image's detail with super-resolution, keeping its size.",
		Processor:       &Processor{run: imagetask.Runner{Executors: set, Fetcher: fetcher}},
		Scheduler:       &imagetask.RealOnly[Fields]{Executors: set, Type: Name, Default: DefaultProvider},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: DefaultProvider,
		Providers:       []string{imagetask.KindCommand, imagetask.KindFal, imagetask.KindReplicate, imagetask.KindMock},
		Timeout:         10 * time.Minute,
		Examples:        imagetask.Examples(Name, map[string]any{"strength": 0.5}),
	}
}

// Output is the result data of a detail_enhancer task.
type Output struct {
	// Width and Height are the size of the result.
	Width  int `json:"width"`
	Height int `json:"height"`
}

// Processor runs detail_enhancer tasks.
type Processor struct{ run imagetask.Runner }

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	if err := job.Progress(ctx, 1, "reading the image"); err != nil {
		return nil, err
	}
	in, err := imagetask.Read(ctx, p.run.Fetcher, job.Task.OriginTenantID, "image_url", f.ImageURL)
	if err != nil {
		return nil, err
	}
	if px := int64(in.Config.Width) * int64(in.Config.Height); px > MaxPixels {
		return nil, executor.Errorf(executor.InvalidInput, "image_url is %dx%d (%.1f megapixels); the limit is %d megapixels",
			in.Config.Width, in.Config.Height, float64(px)/1e6, MaxPixels/1_000_000)
	}
	art, out, err := imagetask.Run(ctx, p.run, job, Operation, DefaultProvider, imagetask.Scaled(job.Progress, 5, 95))
	if err != nil {
		return nil, err
	}
	f.ResultImagePath = &art.Key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{Artifacts: out.Artifacts, Data: Output{Width: art.Width, Height: art.Height}}, nil
}

// Resume implements registry.ResumerOf: the run starts afresh (or
// re-attaches to a hosted job).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
