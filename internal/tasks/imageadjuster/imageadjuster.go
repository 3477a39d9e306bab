// Package imageadjuster is the original's `image_adjuster` task type:
// brightness, contrast, saturation and gamma adjustments of an image given
// by URL, done in Go (provider "local") with github.com/disintegration/imaging.
package imageadjuster

import (
	"embed"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
)

// Name is the task type name.
const Name = "image_adjuster"

// ProviderLocal is the default executor, of the only executor type the
// type runs on: built-in Go image operations (local.Kind).
const ProviderLocal = "local"

// Output formats.
const (
	FormatPNG  = "png"
	FormatJPEG = "jpeg"
)

// MaxURLLength is the longest image_url accepted.
const MaxURLLength = 2048

// Fields are the image_adjuster type's own columns (table
// image_adjuster_tasks). Adjustments are percentages as in imaging: 0 (and
// gamma 1) leaves the image unchanged.
type Fields struct {
	ImageURL     string  `json:"image_url" db:"image_url" minLength:"1" maxLength:"2048" doc:"Image to adjust: an http(s) URL or an artifact path (/api/v1/artifacts/...). PNG, JPEG, GIF or WebP, at most 50 megapixels."`
	Brightness   float64 `json:"brightness" required:"false" db:"brightness" minimum:"-100" maximum:"100" default:"0" doc:"Brightness change in percent."`
	Contrast     float64 `json:"contrast" required:"false" db:"contrast" minimum:"-100" maximum:"100" default:"0" doc:"Contrast change in percent."`
	Saturation   float64 `json:"saturation" required:"false" db:"saturation" minimum:"-100" maximum:"500" default:"0" doc:"Saturation change in percent."`
	Gamma        float64 `json:"gamma" required:"false" db:"gamma" minimum:"0.1" maximum:"10" default:"1" doc:"Gamma correction; 1 is unchanged, below 1 darkens, above 1 lightens."`
	OutputFormat string  `json:"output_format" required:"false" db:"output_format" enum:"png,jpeg" default:"png" doc:"Format of the result."`

	ResultImagePath *string `json:"result_image_path,omitempty" db:"result_image_path" readOnly:"true" doc:"Artifact key of the adjusted image."`
}

// Update is the PATCH body of a pending image_adjuster task.
type Update struct {
	ImageURL     *string  `json:"image_url,omitempty" minLength:"1" maxLength:"2048"`
	Brightness   *float64 `json:"brightness,omitempty" minimum:"-100" maximum:"100"`
	Contrast     *float64 `json:"contrast,omitempty" minimum:"-100" maximum:"100"`
	Saturation   *float64 `json:"saturation,omitempty" minimum:"-100" maximum:"500"`
	Gamma        *float64 `json:"gamma,omitempty" minimum:"0.1" maximum:"10"`
	OutputFormat *string  `json:"output_format,omitempty" enum:"png,jpeg"`
}

// ApplyDefaults implements registry.Defaulter for models built in Go (the
// API applies `default` tags itself): a zero gamma is invalid and an empty
// format means PNG.
func (f *Fields) ApplyDefaults() {
	if f.Gamma == 0 {
		f.Gamma = 1
	}
	if f.OutputFormat == "" {
		f.OutputFormat = FormatPNG
	}
}

// Validate implements registry.Validator: image_url must be an http(s)
// URL with a host or an artifact path, and the ranges of the schema hold
// (for models built in Go, which bypass the API's validation).
func (f *Fields) Validate() error {
	fail := func(field, format string, a ...any) error {
		return &registry.FieldError{Field: field, Message: fmt.Sprintf(format, a...)}
	}
	switch {
	case f.ImageURL == "":
		return fail("image_url", "is required")
	case len(f.ImageURL) > MaxURLLength:
		return fail("image_url", "must be at most %d characters", MaxURLLength)
	default:
		if err := artifact.CheckInputURL(f.ImageURL); err != nil {
			return fail("image_url", "%v", err)
		}
	}
	for _, r := range []struct {
		name     string
		v        float64
		min, max float64
	}{
		{"brightness", f.Brightness, -100, 100},
		{"contrast", f.Contrast, -100, 100},
		{"saturation", f.Saturation, -100, 500},
		{"gamma", f.Gamma, 0.1, 10},
	} {
		if r.v < r.min || r.v > r.max {
			return fail(r.name, "must be between %g and %g, is %g", r.min, r.max, r.v)
		}
	}
	if f.OutputFormat != FormatPNG && f.OutputFormat != FormatJPEG {
		return fail("output_format", "must be png or jpeg, is %q", f.OutputFormat)
	}
	return nil
}

//go:embed migrations
var migrations embed.FS

// Type declares the image_adjuster task type; fetcher opens the input
// images (artifacts of this server directly, other URLs over HTTP through
// its policy-checked client). A nil fetcher can only fetch public URLs.
// executors are the configured executors (nil: mock and local).
func Type(fetcher *artifact.Fetcher, executors *executor.Set) registry.Type[Fields, Update] {
	if fetcher == nil {
		fetcher = &artifact.Fetcher{}
	}
	if executors == nil {
		executors = defaultExecutors()
	}
	return registry.Type[Fields, Update]{
		Name:            Name,
		Title:           "Image adjuster",
		Description:     "Adjusts brightness, contrast, saturation and gamma of an image.",
		Processor:       &Processor{fetcher: fetcher, executors: executors},
		Migrations:      registry.Sub(migrations, "migrations"),
		DefaultProvider: ProviderLocal,
		Providers:       []string{local.Kind},
		Timeout:         5 * time.Minute,
		Examples:        examples(),
	}
}

// defaultExecutors is the set of a process without a config file.
func defaultExecutors() *executor.Set { return executors.Default() }
