// Package editing is the original's `editing` task type: an instruction
// applied to a base image with the help of reference images — a garment
// placed on a model, a virtual try-on, a product put into a scene. It runs
// on gemini (image parts in one turn), openai (image edits), fal (an edit
// model's image_url and image_urls) or a ComfyUI workflow template (the
// images uploaded as {{input:image_url}} and
// {{input:reference_image_urls.N}}). The mock draws a placeholder image,
// but only for tasks that name it: a server with no image-editing executor
// refuses editing tasks with a 422 saying what to configure.
package editing

import (
	"embed"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
)

// Name is the task type name on the wire. It is stable: never rename it.
const Name = "editing"

// Executor types the type runs on (docs/task-types.md#editing).
const (
	ProviderGemini  = "gemini"
	ProviderOpenAI  = "openai"
	ProviderFal     = "fal"
	ProviderComfyUI = "comfyui"
	// ProviderMock draws a placeholder, only for tasks that name it.
	ProviderMock = "mock"
)

// Operation is the work an editing task asks its executor for.
const Operation = "edit_image"

// Limits of the fields, shared by the schema tags and Validate.
const (
	MaxPromptLength = 10000
	MaxURLLength    = 2048
	MaxReferences   = 8
	MinSide         = 64
	MaxSide         = 4096
	MaxSeed         = 1<<53 - 1
)

// Fields are the editing type's own columns (table editing_tasks). Pointer
// fields are optional (NULL when absent); readOnly fields are outputs the
// processor writes.
type Fields struct {
	ImageURL           string   `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"The image to edit (the model, the scene): an http(s) URL or an artifact path (/api/v1/artifacts/...)."`
	ReferenceImageURLs []string `json:"reference_image_urls,omitempty" db:"reference_image_urls" maxItems:"8" doc:"Images the instruction refers to, in order (the garment, an accessory): URLs or artifact paths. The instruction may call them the second, third… image."`
	Prompt             string   `json:"prompt" db:"prompt" minLength:"1" maxLength:"10000" doc:"The instruction, e.g. \"Dress the woman in the first image in the dress of the second; keep her pose and the background\"."`
	MaskURL            *string  `json:"mask_url,omitempty" db:"mask_url" maxLength:"2048" doc:"A mask of the area to edit (transparent where to edit); openai executors only."`
	Width              *int     `json:"width,omitempty" db:"width" minimum:"64" maximum:"4096" doc:"Width of the result, with height (openai: one of its sizes; gemini: the nearest aspect ratio); the executor's default when absent."`
	Height             *int     `json:"height,omitempty" db:"height" minimum:"64" maximum:"4096" doc:"Height of the result, with width."`
	Seed               *int64   `json:"seed,omitempty" db:"seed" minimum:"0" maximum:"9007199254740991" doc:"Random seed, for executors that take one."`
	ComfyWorkflow      *string  `json:"comfy_workflow,omitempty" db:"comfy_workflow" maxLength:"128" doc:"ComfyUI workflow template to run; the executor's default for editing when absent. Only comfyui executors read it."`

	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the edited image."`
}

// Update is the PATCH body of a pending editing task.
type Update struct {
	ImageURL           *string   `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	ReferenceImageURLs *[]string `json:"reference_image_urls,omitempty" maxItems:"8"`
	Prompt             *string   `json:"prompt,omitempty" minLength:"1" maxLength:"10000"`
	MaskURL            *string   `json:"mask_url,omitempty" maxLength:"2048"`
	Width              *int      `json:"width,omitempty" minimum:"64" maximum:"4096"`
	Height             *int      `json:"height,omitempty" minimum:"64" maximum:"4096"`
	Seed               *int64    `json:"seed,omitempty" minimum:"0" maximum:"9007199254740991"`
	ComfyWorkflow      *string   `json:"comfy_workflow,omitempty" maxLength:"128"`
}

// Validate implements registry.Validator: every image URL of a form the
// fetcher reads, at most MaxReferences references, width and height
// together, and the schema's ranges again for models built in Go.
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	url := func(field, u string) error {
		if u == "" {
			return fail(field, "is required")
		}
		if len(u) > MaxURLLength {
			return fail(field, "must be at most %d characters", MaxURLLength)
		}
		if err := artifact.CheckInputURL(u); err != nil {
			return fail(field, "%v", err)
		}
		return nil
	}
	if err := url("image_url", f.ImageURL); err != nil {
		return err
	}
	if len(f.ReferenceImageURLs) > MaxReferences {
		return fail("reference_image_urls", "must have at most %d images, has %d", MaxReferences, len(f.ReferenceImageURLs))
	}
	for i, u := range f.ReferenceImageURLs {
		if err := url(fmt.Sprintf("reference_image_urls[%d]", i), u); err != nil {
			return err
		}
	}
	if f.MaskURL != nil {
		if err := url("mask_url", *f.MaskURL); err != nil {
			return err
		}
	}
	if n := utf8.RuneCountInString(f.Prompt); n < 1 || n > MaxPromptLength {
		return fail("prompt", "must be 1 to %d characters, is %d", MaxPromptLength, n)
	}
	if (f.Width == nil) != (f.Height == nil) {
		field := "height"
		if f.Width == nil {
			field = "width"
		}
		return fail(field, "give width and height together, or neither")
	}
	for _, side := range []struct {
		name string
		v    *int
	}{{"width", f.Width}, {"height", f.Height}} {
		if side.v != nil && (*side.v < MinSide || *side.v > MaxSide) {
			return fail(side.name, "must be between %d and %d, is %d", MinSide, MaxSide, *side.v)
		}
	}
	if f.Seed != nil && (*f.Seed < 0 || *f.Seed > MaxSeed) {
		return fail("seed", "must be between 0 and %d", int64(MaxSeed))
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the editing task type; fetcher reads the images on behalf
// of the task's tenant (nil: public URLs only), set are the configured
// executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, set *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if set == nil {
		set = executors.Default()
	}
	providers := []string{ProviderGemini, ProviderOpenAI, ProviderFal, ProviderComfyUI, ProviderMock}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "Image editing",
		Description:     "Edits an image by an instruction with reference images: garment placement, virtual try-on, product in a scene.",
		Processor:       &Processor{fetcher: fetcher, executors: set},
		Scheduler:       &Scheduler{executors: set, providers: providers},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: ProviderGemini,
		Providers:       providers,
		Timeout:         10 * time.Minute,
		Examples:        examples(),
	}
}
