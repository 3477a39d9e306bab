// Package faceenhancer is the original's `face_enhancer` task type: the
// faces of an image restored in place. On the local models of `make
// models` (executor models-tf) it finds the faces with face-api (SSD
// MobileNet v1), super-resolves each face's crop (with a quarter of margin)
// ×2 with ESRGAN and resamples it back, and blends it over the original
// with a feathered mask scaled by strength, so no seam shows. fal or
// replicate executors whose models map `enhance_faces` (a GFPGAN or
// CodeFormer model) run it too.
package faceenhancer

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
const Name = "face_enhancer"

// Operation is the executor operation the type asks for.
const Operation = "enhance_faces"

// DefaultProvider is the executor a task naming none runs on.
const DefaultProvider = executors.ModelsTF

// MaxPixels is the largest input, in pixels (16 megapixels).
const MaxPixels = 16_000_000

// Fields are the face_enhancer type's own columns (table
// face_enhancer_tasks).
type Fields struct {
	ImageURL      string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image whose faces to enhance: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP, at most 16 megapixels."`
	Strength      float64 `json:"strength" required:"false" db:"strength" minimum:"0" maximum:"1" default:"0.8" doc:"How much of the enhanced face replaces the original (0: unchanged)."`
	MinConfidence float64 `json:"min_confidence" required:"false" db:"min_confidence" minimum:"0.05" maximum:"0.99" default:"0.5" doc:"Lowest detection score of a face that is enhanced."`

	FacesFound      *int    `json:"faces_found,omitempty" db:"faces_found" readOnly:"true" doc:"How many faces were found and enhanced (when the executor says)."`
	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the enhanced image (PNG, the input's size)."`
}

// Update is the PATCH body of a pending face_enhancer task.
type Update struct {
	ImageURL      *string  `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	Strength      *float64 `json:"strength,omitempty" minimum:"0" maximum:"1"`
	MinConfidence *float64 `json:"min_confidence,omitempty" minimum:"0.05" maximum:"0.99"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go: a
// zero confidence is invalid and means the default.
func (f *Fields) ApplyDefaults() {
	if f.MinConfidence == 0 {
		f.MinConfidence = 0.5
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
	if f.MinConfidence < 0.05 || f.MinConfidence > 0.99 {
		return &registry.FieldError{Field: "min_confidence", Message: fmt.Sprintf("must be between 0.05 and 0.99, is %g", f.MinConfidence)}
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the face_enhancer task type; fetcher reads the input
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
		Title:           "Face enhancer",
		Description:     "Finds the faces of an image and restores their detail in place.",
		Processor:       &Processor{run: imagetask.Runner{Executors: set, Fetcher: fetcher}},
		Scheduler:       &imagetask.RealOnly[Fields]{Executors: set, Type: Name, Default: DefaultProvider, Kinds: providers},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: DefaultProvider,
		Providers:       providers,
		Timeout:         10 * time.Minute,
		Examples:        imagetask.Examples(Name, map[string]any{"strength": 0.9}),
	}
}

// Output is the result data of a face_enhancer task.
type Output struct {
	// Width and Height are the size of the result.
	Width  int `json:"width"`
	Height int `json:"height"`
	// FacesFound is how many faces were enhanced, when the executor says.
	FacesFound *int `json:"faces_found,omitempty"`
	// Faces are the faces found (score and box), when the executor says.
	Faces any `json:"faces,omitempty"`
}

// Processor runs face_enhancer tasks.
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
	res := Output{Width: art.Width, Height: art.Height, Faces: out.Data["faces"]}
	if n, ok := out.Data["faces_found"].(float64); ok {
		found := int(n)
		f.FacesFound, res.FacesFound = &found, &found
	}
	f.ResultImagePath = &art.Key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{Artifacts: out.Artifacts, Data: res}, nil
}

// Resume implements registry.ResumerOf: the run starts afresh (or
// re-attaches to a hosted job).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
