// Package backgroundfix is the original's `background_fix` task type: the
// subject of an image put on a new background — a colour, another image,
// or one generated from a prompt. The subject is cut out by the
// remove_background operation of the task's executor (the local model of
// `make models` on models-bg, or a fal/replicate model), unless the input
// is a cut-out already (is_cutout); the background is made and composited
// under it in Go. A prompt's background is drawn by the executor that
// runs generation tasks (text_to_image).
package backgroundfix

import (
	"embed"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/generation"
	"github.com/computeserver/compute/internal/tasks/imagetask"
)

// Name is the task type name.
const Name = "background_fix"

// Operation is the executor operation that makes the cut-out.
const Operation = "remove_background"

// DefaultProvider is the executor a task naming none cuts out on.
const DefaultProvider = executors.ModelsBackground

// MaxPromptLength is the longest background_prompt, in characters.
const MaxPromptLength = 2000

// Output formats.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
)

// Fields are the background_fix type's own columns (table
// background_fix_tasks). Exactly one of background_color,
// background_image_url and background_prompt is set.
type Fields struct {
	ImageURL           string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image whose background to replace: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP, at most 50 megapixels."`
	BackgroundColor    *string `json:"background_color,omitempty" db:"background_color" pattern:"^#[0-9a-fA-F]{6}$" doc:"New background: a colour written #rrggbb."`
	BackgroundImageURL *string `json:"background_image_url,omitempty" db:"background_image_url" maxLength:"2048" doc:"New background: an image (http(s) URL or artifact path), scaled and centre-cropped to cover the frame."`
	BackgroundPrompt   *string `json:"background_prompt,omitempty" db:"background_prompt" maxLength:"2000" doc:"New background: a description, drawn by the executor that runs generation tasks and scaled to cover the frame."`
	IsCutout           bool    `json:"is_cutout" required:"false" db:"is_cutout" default:"false" doc:"The image is a cut-out already (its alpha channel is the subject, as background_remove returns): no background removal runs."`
	OutputFormat       string  `json:"output_format" required:"false" db:"output_format" enum:"png,jpeg" default:"png" doc:"Format of the result."`

	CutoutImagePath     *string `json:"cutout_image_path,omitempty" db:"cutout_image_path" readOnly:"true" doc:"Artifact key of the cut-out (when one was made)."`
	BackgroundImagePath *string `json:"background_image_path,omitempty" db:"background_image_path" readOnly:"true" doc:"Artifact key of the generated background (background_prompt)."`
	ResultImagePath     *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the subject on its new background."`
}

// Update is the PATCH body of a pending background_fix task.
type Update struct {
	ImageURL           *string `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	BackgroundColor    *string `json:"background_color,omitempty" pattern:"^#[0-9a-fA-F]{6}$"`
	BackgroundImageURL *string `json:"background_image_url,omitempty" maxLength:"2048"`
	BackgroundPrompt   *string `json:"background_prompt,omitempty" maxLength:"2000"`
	IsCutout           *bool   `json:"is_cutout,omitempty"`
	OutputFormat       *string `json:"output_format,omitempty" enum:"png,jpeg"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go.
func (f *Fields) ApplyDefaults() {
	if f.OutputFormat == "" {
		f.OutputFormat = FormatPNG
	}
}

// Validate implements registry.Validator: the URLs, the colour, and
// exactly one background.
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	if err := imagetask.CheckURL("image_url", f.ImageURL, false); err != nil {
		return err
	}
	n := 0
	if f.BackgroundColor != nil {
		n++
		if _, err := ParseColor(*f.BackgroundColor); err != nil {
			return fail("background_color", "%v", err)
		}
	}
	if f.BackgroundImageURL != nil {
		n++
		if err := imagetask.CheckURL("background_image_url", *f.BackgroundImageURL, false); err != nil {
			return err
		}
	}
	if f.BackgroundPrompt != nil {
		n++
		if c := utf8.RuneCountInString(*f.BackgroundPrompt); c < 1 || c > MaxPromptLength {
			return fail("background_prompt", "must be 1 to %d characters, is %d", MaxPromptLength, c)
		}
	}
	if n != 1 {
		return fail("background_color", "give exactly one of background_color, background_image_url and background_prompt (%d given)", n)
	}
	if f.OutputFormat != FormatPNG && f.OutputFormat != FormatJPEG {
		return fail("output_format", "must be png or jpeg, is %q", f.OutputFormat)
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the background_fix task type; fetcher reads the input
// images, executors are the configured executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, set *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if set == nil {
		set = executors.Default()
	}
	providers := []string{imagetask.KindCommand, imagetask.KindFal, imagetask.KindReplicate, imagetask.KindMock}
	gen := generation.Type(generation.Config{Executors: set, Fetcher: fetcher})
	return registry.Type[Fields, Update]{
		Name:        Name,
		Title:       "Background fix",
		Description: "Puts the subject of an image on a new background: a colour, an image or one drawn from a prompt.",
		Processor:   &Processor{run: imagetask.Runner{Executors: set, Fetcher: fetcher}, genKinds: gen.Providers},
		Scheduler: &imagetask.RealOnly[Fields]{Executors: set, Type: Name, Default: DefaultProvider, Kinds: providers,
			Skip: func(f *Fields) bool { return f.IsCutout }},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: DefaultProvider,
		Providers:       providers,
		Timeout:         10 * time.Minute,
		Examples:        examples(),
	}
}

// examples: a cut-out put on a colour (done in Go, on any server) and an
// input that is not an image.
func examples() []registry.Example {
	cutoutKey := "examples/" + Name + "/cutout.png"
	notImageKey := "examples/" + Name + "/not-an-image.png"
	return []registry.Example{
		{
			Name:       "a cut-out on a white background",
			Body:       map[string]any{"image_url": artifact.PathPrefix + cutoutKey, "is_cutout": true, "background_color": "#ffffff"},
			Inputs:     []registry.ExampleInput{{Key: cutoutKey, ContentType: "image/png", Data: imagetask.ExampleCutoutPNG()}},
			WantStatus: task.StatusCompleted,
		},
		{
			Name:       "an input that is not an image",
			Body:       map[string]any{"image_url": artifact.PathPrefix + notImageKey, "is_cutout": true, "background_color": "#ffffff"},
			Inputs:     []registry.ExampleInput{{Key: notImageKey, ContentType: "image/png", Data: []byte("this is not a picture")}},
			WantStatus: task.StatusFailed,
			WantError:  "not a supported image",
		},
	}
}
