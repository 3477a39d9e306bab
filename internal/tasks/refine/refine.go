// Package refine is the original's `refine` task type: an image upscaled
// by a factor (1 to 4) with super-resolution. On the local models of
// `make models` (executor models-tf) it runs ESRGAN (RDN weights of
// @upscalerjs/esrgan-slim): factors 2, 3 and 4 natively, others with the
// next integer model resampled (Lanczos) to the exact size; strength
// blends the network's result with a plain Lanczos upscale. fal or
// replicate executors whose models map `upscale` run it too.
package refine

import (
	"context"
	"embed"
	"fmt"
	"math"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/imagetask"
)

// Name is the task type name.
const Name = "refine"

// Operation is the executor operation the type asks for.
const Operation = "upscale"

// DefaultProvider is the executor a task naming none runs on.
const DefaultProvider = executors.ModelsTF

// MaxOutputPixels is the largest result, in pixels (16 megapixels).
const MaxOutputPixels = 16_000_000

// Fields are the refine type's own columns (table refine_tasks).
type Fields struct {
	ImageURL      string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image to upscale: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP; the result may have at most 16 megapixels."`
	UpscaleFactor float64 `json:"upscale_factor" required:"false" db:"upscale_factor" minimum:"1" maximum:"4" default:"2" doc:"How many times larger the result is on each side (1 to 4; 2, 3 and 4 are the model's own scales, others are resampled from the next one)."`
	Strength      float64 `json:"strength" required:"false" db:"strength" minimum:"0" maximum:"1" default:"1" doc:"How much of the super-resolved image the result holds; the rest is a plain Lanczos upscale (0: Lanczos only)."`

	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the upscaled image (PNG)."`
}

// Update is the PATCH body of a pending refine task.
type Update struct {
	ImageURL      *string  `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	UpscaleFactor *float64 `json:"upscale_factor,omitempty" minimum:"1" maximum:"4"`
	Strength      *float64 `json:"strength,omitempty" minimum:"0" maximum:"1"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go: a
// zero factor is invalid and means the default, 2.
func (f *Fields) ApplyDefaults() {
	if f.UpscaleFactor == 0 {
		f.UpscaleFactor = 2
	}
}

// Validate implements registry.Validator.
func (f *Fields) Validate() error {
	if err := imagetask.CheckURL("image_url", f.ImageURL, false); err != nil {
		return err
	}
	if f.UpscaleFactor < 1 || f.UpscaleFactor > 4 {
		return &registry.FieldError{Field: "upscale_factor", Message: fmt.Sprintf("must be between 1 and 4, is %g", f.UpscaleFactor)}
	}
	if f.Strength < 0 || f.Strength > 1 {
		return &registry.FieldError{Field: "strength", Message: fmt.Sprintf("must be between 0 and 1, is %g", f.Strength)}
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the refine task type; fetcher reads the input images,
// executors are the configured executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, set *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if set == nil {
		set = executors.Default()
	}
	providers := []string{imagetask.KindCommand, imagetask.KindFal, imagetask.KindReplicate, imagetask.KindMock}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "Refine (upscale)",
		Description:     "Upscales an image by a factor with super-resolution.",
		Processor:       &Processor{run: imagetask.Runner{Executors: set, Fetcher: fetcher}},
		Scheduler:       &imagetask.RealOnly[Fields]{Executors: set, Type: Name, Default: DefaultProvider, Kinds: providers},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: DefaultProvider,
		Providers:       providers,
		Timeout:         10 * time.Minute,
		Examples:        imagetask.Examples(Name, map[string]any{"upscale_factor": 2}),
	}
}

// Output is the result data of a refine task.
type Output struct {
	// Width and Height are the size of the result.
	Width  int `json:"width"`
	Height int `json:"height"`
	// UpscaleFactor is the factor applied.
	UpscaleFactor float64 `json:"upscale_factor"`
}

// Processor runs refine tasks.
type Processor struct{ run imagetask.Runner }

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf: it checks the input and the
// result's size, then has the executor upscale the image.
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
	w := int(math.Round(float64(in.Config.Width) * f.UpscaleFactor))
	h := int(math.Round(float64(in.Config.Height) * f.UpscaleFactor))
	if int64(w)*int64(h) > MaxOutputPixels {
		return nil, executor.Errorf(executor.InvalidInput, "the result would be %dx%d (%.1f megapixels); the limit is %d megapixels: use a smaller upscale_factor or image",
			w, h, float64(w)*float64(h)/1e6, MaxOutputPixels/1_000_000)
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
	return &task.Result{Artifacts: out.Artifacts, Data: Output{Width: art.Width, Height: art.Height, UpscaleFactor: f.UpscaleFactor}}, nil
}

// Resume implements registry.ResumerOf: the run starts afresh (or
// re-attaches to a hosted job).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
