// Package generation is the original's `generation` task type: text to
// image with up to four LoRA adapters (subject, product, style, second
// product) and an optional reference image, run on the configured executor
// its provider_type names (package executor). The mock renders a
// deterministic picture.
package generation

import (
	"embed"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Name is the task type name.
const Name = "generation"

// Executor type names the type can run on.
const (
	ProviderMock      = "mock"
	ProviderComfyUI   = "comfyui"
	ProviderFal       = "fal"
	ProviderReplicate = "replicate"
)

// Limits of the fields, shared by the schema tags and Validate.
const (
	MaxPromptLength = 10000
	MinSide         = 64
	MaxSide         = 4096
	MaxSteps        = 150
	MaxGuidance     = 30
	// MaxSeed is the largest seed a JSON client can send without losing
	// precision (2^53-1).
	MaxSeed = 1<<53 - 1
)

// Fields are the generation type's own columns (table generation_tasks).
// Pointer fields are optional (NULL when absent); fields marked readOnly
// are outputs and bookkeeping written by the processor.
//
// Float fields whose default is not zero (the LoRA weights, the reference
// strength, the guidance scale) rely on the API applying `default` tags to
// absent keys: an explicit 0 is a valid value and is kept.
type Fields struct {
	Prompt         string  `json:"prompt" db:"prompt" minLength:"1" maxLength:"10000" doc:"What to draw."`
	NegativePrompt *string `json:"negative_prompt,omitempty" db:"negative_prompt" maxLength:"10000" doc:"What to avoid."`

	Width             int     `json:"width" required:"false" db:"width" minimum:"64" maximum:"4096" multipleOf:"8" default:"1024" doc:"Image width in pixels, a multiple of 8."`
	Height            int     `json:"height" required:"false" db:"height" minimum:"64" maximum:"4096" multipleOf:"8" default:"1024" doc:"Image height in pixels, a multiple of 8."`
	Seed              *int64  `json:"seed,omitempty" db:"seed" minimum:"0" maximum:"9007199254740991" doc:"Random seed; when absent one is derived from the task id and saved, so a retry draws the same image."`
	NumInferenceSteps int     `json:"num_inference_steps" required:"false" db:"num_inference_steps" minimum:"1" maximum:"150" default:"28" doc:"Denoising steps."`
	GuidanceScale     float64 `json:"guidance_scale" required:"false" db:"guidance_scale" minimum:"0" maximum:"30" default:"3.5" doc:"Classifier-free guidance scale."`

	SubjectModelPath   *string `json:"subject_model_path,omitempty" db:"subject_model_path" maxLength:"2048" doc:"LoRA weights of the subject (a person or character)."`
	SubjectLoraWeight  float64 `json:"subject_lora_weight" required:"false" db:"subject_lora_weight" minimum:"0" maximum:"1" default:"1" doc:"Strength of the subject LoRA."`
	ProductModelPath   *string `json:"product_model_path,omitempty" db:"product_model_path" maxLength:"2048" doc:"LoRA weights of the product."`
	ProductLoraWeight  float64 `json:"product_lora_weight" required:"false" db:"product_lora_weight" minimum:"0" maximum:"1" default:"1" doc:"Strength of the product LoRA."`
	StyleModelPath     *string `json:"style_model_path,omitempty" db:"style_model_path" maxLength:"2048" doc:"LoRA weights of the style."`
	StyleLoraWeight    float64 `json:"style_lora_weight" required:"false" db:"style_lora_weight" minimum:"0" maximum:"1" default:"1" doc:"Strength of the style LoRA."`
	Product2ModelPath  *string `json:"product2_model_path,omitempty" db:"product2_model_path" maxLength:"2048" doc:"LoRA weights of a second product."`
	Product2LoraWeight float64 `json:"product2_lora_weight" required:"false" db:"product2_lora_weight" minimum:"0" maximum:"1" default:"1" doc:"Strength of the second product LoRA."`

	ReferenceImageURL      *string `json:"reference_image_url,omitempty" db:"reference_image_url" maxLength:"2048" doc:"Image that guides composition (http(s) URL or artifact path)."`
	ReferenceImageStrength float64 `json:"reference_image_strength" required:"false" db:"reference_image_strength" minimum:"0" maximum:"1" default:"0.5" doc:"How strongly the reference image guides the result."`

	BackendGenerationID    *string        `json:"backend_generation_id,omitempty" db:"backend_generation_id" maxLength:"256" doc:"Id of the generation in the product backend, set by it at create."`
	BackendPredictionID    *string        `json:"backend_prediction_id,omitempty" db:"backend_prediction_id" maxLength:"256" doc:"Id of the prediction at a hosted provider, set by the product backend at create."`
	ComfyWorkflow          *string        `json:"comfy_workflow,omitempty" db:"comfy_workflow" maxLength:"128" doc:"ComfyUI workflow template to run (a file name without .json in the executor's workflows directory); the type's default when absent. Only comfyui executors read it."`
	WorkflowID             *string        `json:"workflow_id,omitempty" db:"workflow_id" readOnly:"true" doc:"Workflow this task belongs to."`
	ComfyPromptID          *string        `json:"comfy_prompt_id,omitempty" db:"comfy_prompt_id" readOnly:"true" doc:"ComfyUI prompt id, for resume."`
	ComfyServerURL         *string        `json:"comfy_server_url,omitempty" db:"comfy_server_url" readOnly:"true" doc:"ComfyUI server running the task."`
	ComfyUIRetryServerURLs []string       `json:"comfyui_retry_server_urls,omitempty" db:"comfyui_retry_server_urls" readOnly:"true" doc:"ComfyUI servers tried before, in order."`
	ComfyWorkflowData      map[string]any `json:"comfy_workflow_data,omitempty" db:"comfy_workflow_data" readOnly:"true" doc:"The filled ComfyUI workflow graph the server ran."`
	ResultImagePath        *string        `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the generated image."`
}

// Update is the PATCH body of a pending generation task.
type Update struct {
	Prompt                 *string  `json:"prompt,omitempty" minLength:"1" maxLength:"10000"`
	NegativePrompt         *string  `json:"negative_prompt,omitempty" maxLength:"10000"`
	Width                  *int     `json:"width,omitempty" minimum:"64" maximum:"4096" multipleOf:"8"`
	Height                 *int     `json:"height,omitempty" minimum:"64" maximum:"4096" multipleOf:"8"`
	Seed                   *int64   `json:"seed,omitempty" minimum:"0" maximum:"9007199254740991"`
	NumInferenceSteps      *int     `json:"num_inference_steps,omitempty" minimum:"1" maximum:"150"`
	GuidanceScale          *float64 `json:"guidance_scale,omitempty" minimum:"0" maximum:"30"`
	SubjectModelPath       *string  `json:"subject_model_path,omitempty" maxLength:"2048"`
	SubjectLoraWeight      *float64 `json:"subject_lora_weight,omitempty" minimum:"0" maximum:"1"`
	ProductModelPath       *string  `json:"product_model_path,omitempty" maxLength:"2048"`
	ProductLoraWeight      *float64 `json:"product_lora_weight,omitempty" minimum:"0" maximum:"1"`
	StyleModelPath         *string  `json:"style_model_path,omitempty" maxLength:"2048"`
	StyleLoraWeight        *float64 `json:"style_lora_weight,omitempty" minimum:"0" maximum:"1"`
	Product2ModelPath      *string  `json:"product2_model_path,omitempty" maxLength:"2048"`
	Product2LoraWeight     *float64 `json:"product2_lora_weight,omitempty" minimum:"0" maximum:"1"`
	ReferenceImageURL      *string  `json:"reference_image_url,omitempty" maxLength:"2048"`
	ReferenceImageStrength *float64 `json:"reference_image_strength,omitempty" minimum:"0" maximum:"1"`
	BackendGenerationID    *string  `json:"backend_generation_id,omitempty" maxLength:"256"`
	BackendPredictionID    *string  `json:"backend_prediction_id,omitempty" maxLength:"256"`
	ComfyWorkflow          *string  `json:"comfy_workflow,omitempty" maxLength:"128"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go
// (the API applies `default` tags itself). It only fills fields whose
// zero value is invalid; a zero LoRA weight or guidance scale is a
// choice, not an absence.
func (f *Fields) ApplyDefaults() {
	if f.Width == 0 {
		f.Width = 1024
	}
	if f.Height == 0 {
		f.Height = 1024
	}
	if f.NumInferenceSteps == 0 {
		f.NumInferenceSteps = 28
	}
}

// Validate implements registry.Validator. It checks what JSON Schema does
// not (sides are multiples of 8, the prompt's length in characters), and
// repeats the ranges so a model built in Go, which bypasses the API's
// schema validation, is held to the same rules.
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	if n := utf8.RuneCountInString(f.Prompt); n < 1 || n > MaxPromptLength {
		return fail("prompt", "must be 1 to %d characters, is %d", MaxPromptLength, n)
	}
	if f.NegativePrompt != nil && utf8.RuneCountInString(*f.NegativePrompt) > MaxPromptLength {
		return fail("negative_prompt", "must be at most %d characters", MaxPromptLength)
	}
	for _, side := range []struct {
		name string
		v    int
	}{{"width", f.Width}, {"height", f.Height}} {
		if side.v < MinSide || side.v > MaxSide {
			return fail(side.name, "must be between %d and %d, is %d", MinSide, MaxSide, side.v)
		}
		if side.v%8 != 0 {
			return fail(side.name, "must be a multiple of 8, is %d (try %d)", side.v, side.v/8*8)
		}
	}
	if f.Seed != nil && (*f.Seed < 0 || *f.Seed > MaxSeed) {
		return fail("seed", "must be between 0 and %d", int64(MaxSeed))
	}
	if f.NumInferenceSteps < 1 || f.NumInferenceSteps > MaxSteps {
		return fail("num_inference_steps", "must be between 1 and %d, is %d", MaxSteps, f.NumInferenceSteps)
	}
	if f.GuidanceScale < 0 || f.GuidanceScale > MaxGuidance {
		return fail("guidance_scale", "must be between 0 and %d, is %g", MaxGuidance, f.GuidanceScale)
	}
	for _, w := range []struct {
		name string
		v    float64
	}{
		{"subject_lora_weight", f.SubjectLoraWeight},
		{"product_lora_weight", f.ProductLoraWeight},
		{"style_lora_weight", f.StyleLoraWeight},
		{"product2_lora_weight", f.Product2LoraWeight},
		{"reference_image_strength", f.ReferenceImageStrength},
	} {
		if w.v < 0 || w.v > 1 {
			return fail(w.name, "must be between 0 and 1, is %g", w.v)
		}
	}
	if f.ReferenceImageURL != nil {
		if err := artifact.CheckInputURL(*f.ReferenceImageURL); err != nil {
			return fail("reference_image_url", "%v", err)
		}
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Config holds the executors the type uses.
type Config struct {
	// Executors are the configured executors; a task's provider_type
	// names one. Nil means the default set (mock and local).
	Executors *executor.Set
	// Fetcher reads a task's input URLs (reference_image_url) on behalf
	// of its tenant, for executors that hand inputs to a service that
	// cannot fetch them itself (hosted providers get data URIs). Nil:
	// such inputs are refused by those executors.
	Fetcher *artifact.Fetcher
}

// Type declares the generation task type.
func Type(cfg Config) registry.Type[Fields, Update] {
	if cfg.Executors == nil {
		cfg.Executors = executors.Default()
	}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "Image generation",
		Description:     "Generates an image from a prompt, with optional LoRA adapters and a reference image.",
		Processor:       &Processor{executors: cfg.Executors, fetcher: cfg.Fetcher},
		Scheduler:       &Scheduler{executors: cfg.Executors},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: ProviderMock,
		// The executor types whose executors a task's provider_type may
		// name (those configured; see docs/executors.md).
		Providers: []string{ProviderMock, ProviderComfyUI, ProviderFal, ProviderReplicate, "cog", "openai", "gemini", "command"},
		Timeout:   15 * time.Minute,
		Examples: []registry.Example{
			{Name: "a small image on the mock provider", WantStatus: task.StatusCompleted,
				Body: map[string]any{"prompt": "a linen summer dress", "width": 64, "height": 96, "seed": 42, "subject_lora_weight": 0.5}},
			{Name: "a prompt the mock's safety filter blocks", WantStatus: task.StatusFailed, WantError: "safety_blocked",
				Body: map[string]any{"prompt": mock.FailPrefix + "safety_blocked a linen summer dress", "width": 64, "height": 64}},
		},
	}
}
