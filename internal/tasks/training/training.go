// Package training is the original's `training` task type: LoRA weights
// trained from a zip of images (fal's flux-lora-fast-training inputs:
// images_data_url, steps, trigger_word, create_masks, is_style,
// is_input_format_already_preprocessed). It runs on the configured executor
// its provider_type names: fal (fal-ai/flux-lora-fast-training), Replicate
// (a trainer model), a local training script through the command executor,
// or the mock. Its output is the weights artifact, whose URL a later
// generation task takes as a LoRA (subject_model_path and the other
// slots). The original's routes /api/v1/training/… are aliases of the
// typed routes (registry.Type.RouteAlias).
package training

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
)

// Name is the task type name.
const Name = "training"

// RouteAlias is the original's path segment for the type: its tasks are
// also created at POST /api/v1/training/ and read at
// GET /api/v1/training/{task_id}.
const RouteAlias = "training"

// Operation is the work a training task asks its executor for.
const Operation = mock.OpTrainLoRA

// Executor type names the type can run on.
const (
	ProviderMock      = "mock"
	ProviderFal       = "fal"
	ProviderReplicate = "replicate"
	ProviderCommand   = "command"
)

// Limits and defaults of the fields, shared by the schema tags and
// Validate. fal's flux-lora-fast-training documents create_masks' default
// (true, reference/executors.md §2.5); the reference gives no default or
// bound for steps, so these are ours: 1000 steps by default, at most
// 10000.
const (
	DefaultSteps   = 1000
	MaxSteps       = 10000
	MaxTriggerWord = 256
	MaxURLLength   = 2048
)

// Fields are the training type's own columns (table training_tasks).
// Fields marked readOnly are outputs written by the processor.
//
// create_masks defaults to true through the API's `default` tag: an
// explicit false is kept.
type Fields struct {
	ImagesDataURL string  `json:"images_data_url" db:"images_data_url" minLength:"1" maxLength:"2048" doc:"Zip archive of the training images (png, jpg, jpeg, webp), optionally with same-name .txt captions: an http(s) URL or an artifact path (/api/v1/artifacts/...)."`
	Steps         int     `json:"steps" required:"false" db:"steps" minimum:"1" maximum:"10000" default:"1000" doc:"Training steps."`
	TriggerWord   *string `json:"trigger_word,omitempty" db:"trigger_word" maxLength:"256" doc:"Word that invokes the trained subject or style in prompts; used as the caption of images without one."`
	CreateMasks   bool    `json:"create_masks" required:"false" db:"create_masks" default:"true" doc:"Weight the training loss with segmentation masks (a face mask for people)."`
	IsStyle       bool    `json:"is_style" required:"false" db:"is_style" default:"false" doc:"Train a style rather than a subject: no segmentation or captioning, the trigger word instead."`
	// IsInputFormatAlreadyPreprocessed says the archive is already in the
	// trainer's preprocessed layout.
	IsInputFormatAlreadyPreprocessed bool `json:"is_input_format_already_preprocessed" required:"false" db:"is_input_format_already_preprocessed" default:"false" doc:"The archive is already preprocessed; otherwise images and same-name .txt captions are expected."`

	WeightsPath *string `json:"weights_path,omitempty" db:"weights_path" readOnly:"true" doc:"Artifact key of the trained LoRA weights."`
	WeightsURL  *string `json:"weights_url,omitempty" db:"weights_url" readOnly:"true" doc:"URL of the trained LoRA weights (a .safetensors file where the trainer writes one); give it to a generation task as subject_model_path (or another LoRA slot)."`
	ConfigURL   *string `json:"config_url,omitempty" db:"config_url" readOnly:"true" doc:"URL of the training configuration file, when the trainer writes one."`
}

// Update is the PATCH body of a pending training task.
type Update struct {
	ImagesDataURL                    *string `json:"images_data_url,omitempty" minLength:"1" maxLength:"2048"`
	Steps                            *int    `json:"steps,omitempty" minimum:"1" maximum:"10000"`
	TriggerWord                      *string `json:"trigger_word,omitempty" maxLength:"256"`
	CreateMasks                      *bool   `json:"create_masks,omitempty"`
	IsStyle                          *bool   `json:"is_style,omitempty"`
	IsInputFormatAlreadyPreprocessed *bool   `json:"is_input_format_already_preprocessed,omitempty"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go (the
// API applies `default` tags itself): it fills only steps, whose zero is
// invalid; a false create_masks is a choice.
func (f *Fields) ApplyDefaults() {
	if f.Steps == 0 {
		f.Steps = DefaultSteps
	}
}

// Validate implements registry.Validator: images_data_url is an http(s)
// URL or an artifact path, and the schema's bounds hold (for models built
// in Go, which bypass the API's validation).
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	switch {
	case f.ImagesDataURL == "":
		return fail("images_data_url", "is required")
	case len(f.ImagesDataURL) > MaxURLLength:
		return fail("images_data_url", "must be at most %d characters", MaxURLLength)
	}
	if err := artifact.CheckInputURL(f.ImagesDataURL); err != nil {
		return fail("images_data_url", "%v", err)
	}
	if f.Steps < 1 || f.Steps > MaxSteps {
		return fail("steps", "must be between 1 and %d, is %d", MaxSteps, f.Steps)
	}
	if f.TriggerWord != nil && utf8.RuneCountInString(*f.TriggerWord) > MaxTriggerWord {
		return fail("trigger_word", "must be at most %d characters", MaxTriggerWord)
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Config holds what the type uses.
type Config struct {
	// Executors are the configured executors; a task's provider_type
	// names one. Nil means the default set (mock and local).
	Executors *executor.Set
	// Fetcher reads the archive and a recovered run's checkpoint on
	// behalf of the task's tenant. Nil can read only public URLs.
	Fetcher *artifact.Fetcher
}

// Type declares the training task type.
func Type(cfg Config) registry.Type[Fields, Update] {
	if cfg.Executors == nil {
		cfg.Executors = executors.Default()
	}
	if cfg.Fetcher == nil {
		cfg.Fetcher = &artifact.Fetcher{}
	}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "LoRA training",
		Description:     "Trains LoRA weights from a zip of images; the weights' URL feeds a generation task's LoRA slots.",
		Processor:       &Processor{executors: cfg.Executors, fetcher: cfg.Fetcher},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: ProviderMock,
		Providers:       []string{ProviderMock, ProviderFal, ProviderReplicate, ProviderCommand},
		RouteAlias:      RouteAlias,
		// Training takes minutes to hours on a GPU.
		Timeout:  2 * time.Hour,
		Examples: examples(),
	}
}
