// Package detailenhancer is the original's `detail_enhancer` task type: an
// image with crisper detail at its own size. On a `local` executor (the
// default, so it runs everywhere) it is an unsharp mask done in Go in the
// worker: strength sets the amount (0–2), radius the scale of the detail.
// fal or replicate executors whose models map `enhance_details`, or a
// command executor serving it, run it too.
//
// Not ESRGAN ×2 and back: measured on the test portrait, the local models'
// super-resolution smooths (its gradient energy falls from 17.0 to 16.0)
// rather than adding detail (docs/local-models.md).
package detailenhancer

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/imagetask"
)

// Name is the task type name.
const Name = "detail_enhancer"

// Operation is the executor operation the type asks for.
const Operation = local.OpEnhanceDetails

// DefaultProvider is the executor a task naming none runs on.
const DefaultProvider = "local"

// MaxPixels is the largest input, in pixels (50 megapixels).
const MaxPixels = imagetask.MaxPixels

// Fields are the detail_enhancer type's own columns (table
// detail_enhancer_tasks).
type Fields struct {
	ImageURL string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image to enhance: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP, at most 50 megapixels."`
	Strength float64 `json:"strength" required:"false" db:"strength" minimum:"0" maximum:"1" default:"0.5" doc:"How strongly detail is brought out: the unsharp mask's amount is 2 × strength (0: unchanged)."`
	Radius   float64 `json:"radius" required:"false" db:"radius" minimum:"0.3" maximum:"20" default:"1.5" doc:"Scale of the detail enhanced, in pixels (the Gaussian's sigma): about 1 for fine texture, 3 to 5 for larger shapes."`

	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the enhanced image (PNG, the input's size)."`
}

// Update is the PATCH body of a pending detail_enhancer task.
type Update struct {
	ImageURL *string  `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	Strength *float64 `json:"strength,omitempty" minimum:"0" maximum:"1"`
	Radius   *float64 `json:"radius,omitempty" minimum:"0.3" maximum:"20"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go: a
// zero radius is invalid and means the default.
func (f *Fields) ApplyDefaults() {
	if f.Radius == 0 {
		f.Radius = 1.5
	}
}

// Validate implements registry.Validator.
func (f *Fields) Validate() error {
	if err := imagetask.CheckURL("image_url", f.ImageURL, false); err != nil {
		return err
	}
	if f.Strength < 0 || f.Strength > 1 {
		return &registry.FieldError{Field: "strength", Message: fmt.Sprintf("must be between 0 and 1, is %g", f.Strength)}
	}
	if f.Radius < 0.3 || f.Radius > 20 {
		return &registry.FieldError{Field: "radius", Message: fmt.Sprintf("must be between 0.3 and 20, is %g", f.Radius)}
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
		Description:     "Brings out an image's detail (an unsharp mask), keeping its size.",
		Processor:       &Processor{run: imagetask.Runner{Executors: set, Fetcher: fetcher}},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: DefaultProvider,
		Providers:       []string{local.Kind, imagetask.KindCommand, imagetask.KindFal, imagetask.KindReplicate},
		Timeout:         10 * time.Minute,
		Examples:        examples(),
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
	return p.finish(ctx, job, art, out.Artifacts)
}

// finish records the result.
func (p *Processor) finish(ctx context.Context, job *registry.Job[Fields], art task.Artifact, artifacts []task.Artifact) (*task.Result, error) {
	f := job.Fields
	f.ResultImagePath = &art.Key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{Artifacts: artifacts, Data: Output{Width: art.Width, Height: art.Height}}, nil
}

// Resume implements registry.ResumerOf: the run starts afresh (or
// re-attaches to a hosted job).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}

// examples: a real enhancement on the local executor, and an input that
// is not an image.
func examples() []registry.Example {
	ex := imagetask.Examples(Name, map[string]any{"strength": 0.6, "radius": 1})
	for i := range ex {
		delete(ex[i].Body, "provider_type") // the default, local, runs it for real
	}
	ex[0].Name = "enhances an artifact image"
	return ex
}
