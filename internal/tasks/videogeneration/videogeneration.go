// Package videogeneration is the original's `video_generation` task type: a
// short clip from a source image, a prompt, a duration and a frame rate,
// as an MP4. It runs on hosted image-to-video models (fal, replicate, or a
// command script) and, with no provider at all, on the local executor,
// which renders a real pan-and-zoom ("Ken Burns") clip of the image with
// ffmpeg — the embedded default's executor for the type.
package videogeneration

import (
	"embed"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
)

// Name is the task type name on the wire. It is stable: never rename it.
const Name = "video_generation"

// Executor types the type runs on (docs/task-types.md#video_generation).
const (
	ProviderLocal     = "local"
	ProviderFal       = "fal"
	ProviderReplicate = "replicate"
	ProviderCommand   = "command"
)

// Operation is the work a video_generation task asks its executor for.
const Operation = local.OpImageToVideo

// Limits of the fields, shared by the schema tags and Validate.
const (
	MaxURLLength    = 2048
	MaxPromptLength = 4000
	MinDuration     = 0.5
	MaxDuration     = local.MaxVideoSeconds
	MaxFPS          = local.MaxVideoFPS
	MinSide         = local.MinVideoSide
	MaxSide         = local.MaxVideoSide
	// MaxSeed is the largest seed a JSON client can send without losing
	// precision (2^53-1).
	MaxSeed = 1<<53 - 1
)

// Fields are the video_generation type's own columns (table
// video_generation_tasks). Pointer fields are optional (NULL when absent);
// readOnly fields are outputs the processor writes.
type Fields struct {
	ImageURL string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Source image: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP."`
	Prompt   *string `json:"prompt,omitempty" db:"prompt" maxLength:"4000" doc:"What should happen in the clip (hosted models); the local pan-and-zoom ignores it."`
	Duration float64 `json:"duration" required:"false" db:"duration" minimum:"0.5" maximum:"30" default:"5" doc:"Length of the clip in seconds. Hosted models accept only some lengths (often 5 or 10)."`
	FPS      int     `json:"fps" required:"false" db:"fps" minimum:"1" maximum:"60" default:"24" doc:"Frames per second."`
	Width    *int    `json:"width,omitempty" db:"width" minimum:"16" maximum:"1920" multipleOf:"2" doc:"Width of the clip in pixels, an even number, with height; when absent the source's aspect ratio at most 1280 pixels on its longest side."`
	Height   *int    `json:"height,omitempty" db:"height" minimum:"16" maximum:"1920" multipleOf:"2" doc:"Height of the clip in pixels, an even number, with width."`
	Motion   string  `json:"motion" required:"false" db:"motion" enum:"zoom_in,zoom_out,pan_left,pan_right,pan_up,pan_down" default:"zoom_in" doc:"Camera motion of the local pan-and-zoom clip."`
	Seed     *int64  `json:"seed,omitempty" db:"seed" minimum:"0" maximum:"9007199254740991" doc:"Random seed for hosted models."`

	ResultVideoPath *string `json:"result_video_path,omitempty" db:"result_video_path" readOnly:"true" doc:"Artifact key of the clip."`
}

// Update is the PATCH body of a pending video_generation task.
type Update struct {
	ImageURL *string  `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	Prompt   *string  `json:"prompt,omitempty" maxLength:"4000"`
	Duration *float64 `json:"duration,omitempty" minimum:"0.5" maximum:"30"`
	FPS      *int     `json:"fps,omitempty" minimum:"1" maximum:"60"`
	Width    *int     `json:"width,omitempty" minimum:"16" maximum:"1920" multipleOf:"2"`
	Height   *int     `json:"height,omitempty" minimum:"16" maximum:"1920" multipleOf:"2"`
	Motion   *string  `json:"motion,omitempty" enum:"zoom_in,zoom_out,pan_left,pan_right,pan_up,pan_down"`
	Seed     *int64   `json:"seed,omitempty" minimum:"0" maximum:"9007199254740991"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go (the
// API applies `default` tags itself).
func (f *Fields) ApplyDefaults() {
	if f.Duration == 0 {
		f.Duration = 5
	}
	if f.FPS == 0 {
		f.FPS = 24
	}
	if f.Motion == "" {
		f.Motion = local.MotionZoomIn
	}
}

// Validate implements registry.Validator: what the schema cannot say
// (width and height together, the URL's form) and, for models built in
// Go, the schema's ranges again.
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	switch {
	case f.ImageURL == "":
		return fail("image_url", "is required")
	case len(f.ImageURL) > MaxURLLength:
		return fail("image_url", "must be at most %d characters", MaxURLLength)
	}
	if err := artifact.CheckInputURL(f.ImageURL); err != nil {
		return fail("image_url", "%v", err)
	}
	if f.Prompt != nil && utf8.RuneCountInString(*f.Prompt) > MaxPromptLength {
		return fail("prompt", "must be at most %d characters", MaxPromptLength)
	}
	if f.Duration < MinDuration || f.Duration > MaxDuration {
		return fail("duration", "must be between %g and %d seconds, is %g", MinDuration, MaxDuration, f.Duration)
	}
	if f.FPS < 1 || f.FPS > MaxFPS {
		return fail("fps", "must be between 1 and %d, is %d", MaxFPS, f.FPS)
	}
	if (f.Width == nil) != (f.Height == nil) {
		field := "height"
		if f.Width == nil {
			field = "width"
		}
		return fail(field, "give width and height together, or neither (the source's aspect ratio)")
	}
	for _, side := range []struct {
		name string
		v    *int
	}{{"width", f.Width}, {"height", f.Height}} {
		if side.v == nil {
			continue
		}
		if *side.v < MinSide || *side.v > MaxSide {
			return fail(side.name, "must be between %d and %d, is %d", MinSide, MaxSide, *side.v)
		}
		if *side.v%2 != 0 {
			return fail(side.name, "must be even (H.264), is %d", *side.v)
		}
	}
	valid := false
	for _, m := range local.Motions {
		valid = valid || f.Motion == m
	}
	if !valid {
		return fail("motion", "must be one of %v, is %q", local.Motions, f.Motion)
	}
	if f.Seed != nil && (*f.Seed < 0 || *f.Seed > MaxSeed) {
		return fail("seed", "must be between 0 and %d", int64(MaxSeed))
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the video_generation task type; fetcher reads the source
// image on behalf of the task's tenant (nil: public URLs only), executors
// are the configured executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, set *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if set == nil {
		set = executors.Default()
	}
	return registry.Type[Fields, Update]{
		Name:        Name,
		Title:       "Video generation",
		Description: "Makes a short MP4 clip from an image: an image-to-video model on fal or Replicate, or a pan-and-zoom rendered locally with ffmpeg.",
		Processor:   &Processor{fetcher: fetcher, executors: set},
		Migrations:  registry.Sub(migrations, "migrations"),
		// local renders with ffmpeg on the worker: the type works with no
		// provider account.
		DefaultProvider: ProviderLocal,
		Providers:       []string{ProviderLocal, ProviderFal, ProviderReplicate, ProviderCommand},
		Timeout:         20 * time.Minute,
		Examples:        examples(),
	}
}
