// Package local is the executor of the built-in operations: work done on
// the worker's machine with no service involved — image adjustments in Go
// with github.com/disintegration/imaging (OpAdjustImage), and a pan-and-zoom
// clip of an image rendered by an ffmpeg child process (OpImageToVideo,
// video.go), and an unsharp mask that brings out detail (OpEnhanceDetails,
// details.go). Its operations are named by the task type that asks for them.
// A job lives only as long as the process that runs it: after a restart its
// handle is lost and the job starts afresh.
package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // decoders for image.DecodeConfig and imaging.Decode
	_ "image/jpeg"
	_ "image/png"
	"strings"

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/webp"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/task"
)

// Kind is the executor type name in the config file.
const Kind = "local"

// OpAdjustImage adjusts brightness, contrast, saturation and gamma of the
// image at the field image_url (AdjustRequest).
const OpAdjustImage = "adjust_image"

// MaxPixels is the largest input image, in pixels (50 megapixels). It is
// checked from the image header before decoding, so a small file that
// claims a huge size cannot make the worker allocate gigabytes.
const MaxPixels = 50_000_000

// jpegQuality is the quality of JPEG results.
const jpegQuality = 90

// Settings are the local executor's settings in the config file.
type Settings struct {
	// Slots is how many jobs run at once in this process; more wait
	// queued (0: no limit beyond the worker's own).
	Slots int `json:"slots"`
	// FFmpeg is the ffmpeg program OpImageToVideo runs (default "ffmpeg",
	// looked up on PATH when a job runs).
	FFmpeg string `json:"ffmpeg"`
}

// Executor runs the built-in operations.
type Executor struct {
	name   string
	jobs   *inproc.Jobs
	ffmpeg string
	// Hook, when set, runs when a job starts running; an error from it
	// fails the job. Tests use it to hold a job while it runs.
	Hook func(ctx context.Context, job *executor.Job) error
}

var _ executor.Executor = (*Executor)(nil)

// New returns the local executor called name; jobs is its job table (nil:
// one of its own).
func New(name string, s Settings, jobs *inproc.Jobs) (*Executor, error) {
	if s.Slots < 0 {
		return nil, fmt.Errorf("slots must not be negative")
	}
	if jobs == nil {
		jobs = inproc.New(s.Slots)
	}
	if s.FFmpeg == "" {
		s.FFmpeg = "ffmpeg"
	}
	return &Executor{name: name, jobs: jobs, ffmpeg: s.FFmpeg}, nil
}

// Operations are the operations the executor runs.
var Operations = []string{OpAdjustImage, OpImageToVideo, OpEnhanceDetails}

// check decodes and checks a job's fields for its operation; an unknown
// operation is invalid input.
func check(job *executor.Job) error {
	switch job.Operation {
	case OpAdjustImage:
		_, err := decodeAdjust(job)
		return err
	case OpImageToVideo:
		_, err := decodeVideo(job)
		return err
	case OpEnhanceDetails:
		_, err := decodeDetails(job)
		return err
	}
	return executor.Errorf(executor.InvalidInput, "local: unknown operation %q (known: %s)", job.Operation, strings.Join(Operations, ", "))
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return e.name }

// Start implements executor.Executor: it checks the operation and queues
// the job.
func (e *Executor) Start(_ context.Context, job *executor.Job) (executor.Handle, error) {
	if err := check(job); err != nil {
		return executor.Handle{}, err
	}
	id, err := e.jobs.Submit()
	if err != nil {
		return executor.Handle{}, err
	}
	return executor.Handle{Executor: e.name, ExternalID: id, Version: executor.HandleVersion}, nil
}

// Wait implements executor.Executor: the operation runs in the calling
// goroutine.
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	if err := check(job); err != nil {
		return nil, err
	}
	var out *executor.Output
	err := e.jobs.Run(ctx, h.ExternalID, func(ctx context.Context) error {
		if e.Hook != nil {
			if err := e.Hook(ctx, job); err != nil {
				return err
			}
		}
		var err error
		if job.Operation == OpImageToVideo {
			req, _ := decodeVideo(job) // checked above
			out, err = e.imageToVideo(ctx, job, req, r)
			return err
		}
		if job.Operation == OpEnhanceDetails {
			req, _ := decodeDetails(job) // checked above
			out, err = enhanceDetails(ctx, job, req, r)
			return err
		}
		req, _ := decodeAdjust(job) // checked above
		out, err = adjustImage(ctx, job, req, r)
		return err
	})
	return out, err
}

// Cancel implements executor.Executor.
func (e *Executor) Cancel(_ context.Context, h executor.Handle) error {
	e.jobs.Cancel(h.ExternalID)
	return nil
}

// Recover implements executor.Executor: only a job of this process's table
// can be re-attached to.
func (e *Executor) Recover(_ context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	return e.jobs.Recover(h)
}

// AdjustRequest is what OpAdjustImage reads from the job's fields.
// Adjustments are percentages as in imaging: 0 (and gamma 1) changes
// nothing.
type AdjustRequest struct {
	ImageURL     string  `json:"image_url"`
	Brightness   float64 `json:"brightness"`
	Contrast     float64 `json:"contrast"`
	Saturation   float64 `json:"saturation"`
	Gamma        float64 `json:"gamma"`
	OutputFormat string  `json:"output_format"`
}

func decodeAdjust(job *executor.Job) (AdjustRequest, error) {
	var r AdjustRequest
	if err := json.Unmarshal(job.Fields, &r); err != nil {
		return r, executor.Errorf(executor.InvalidInput, "local: reading fields: %w", err)
	}
	if r.Gamma == 0 {
		r.Gamma = 1
	}
	switch {
	case r.ImageURL == "":
		return r, executor.Errorf(executor.InvalidInput, "local: image_url is required")
	case r.OutputFormat == "":
		r.OutputFormat = "png"
	case r.OutputFormat != "png" && r.OutputFormat != "jpeg":
		return r, executor.Errorf(executor.InvalidInput, "local: output_format must be png or jpeg, is %q", r.OutputFormat)
	}
	return r, nil
}

// adjustImage fetches, decodes, adjusts, encodes and stores the image.
func adjustImage(ctx context.Context, job *executor.Job, f AdjustRequest, r executor.Reporter) (*executor.Output, error) {
	if err := r.Progress(ctx, 5, "fetching image"); err != nil {
		return nil, err
	}
	img, err := loadImage(ctx, job, f.ImageURL, func() error { return r.Progress(ctx, 30, "decoding") })
	if err != nil {
		return nil, err
	}
	if err := r.Progress(ctx, 50, "adjusting"); err != nil {
		return nil, err
	}
	img = adjust(img, f)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.Progress(ctx, 80, "encoding"); err != nil {
		return nil, err
	}
	name, contentType, encFormat := "adjusted.png", "image/png", imaging.PNG
	if f.OutputFormat == "jpeg" {
		name, contentType, encFormat = "adjusted.jpg", "image/jpeg", imaging.JPEG
	}
	var buf bytes.Buffer
	if err := imaging.Encode(&buf, img, encFormat, imaging.JPEGQuality(jpegQuality)); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", f.OutputFormat, err)
	}
	art, err := job.Put(ctx, name, contentType, buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("storing image: %w", err)
	}
	b := img.Bounds()
	art.Width, art.Height = b.Dx(), b.Dy()
	return &executor.Output{
		Artifacts: []task.Artifact{art},
		Data:      map[string]any{"width": b.Dx(), "height": b.Dy(), "format": f.OutputFormat},
	}, nil
}

// loadImage fetches the image at url through the job, checks its size
// from its header (MaxPixels) and decodes it, turned upright by its EXIF
// orientation; fetched runs between the fetch and the decoding (a progress
// report). A URL that cannot be read or a file that is not an image is
// invalid input.
func loadImage(ctx context.Context, job *executor.Job, url string, fetched func() error) (image.Image, error) {
	if job.OpenInput == nil {
		return nil, executor.Errorf(executor.InvalidInput, "local: the job cannot read inputs")
	}
	data, err := job.OpenInput(ctx, url)
	if err != nil {
		return nil, classifyFetchError(err)
	}
	if err := fetched(); err != nil {
		return nil, err
	}
	invalid := func(format string, a ...any) error { return executor.Errorf(executor.InvalidInput, format, a...) }
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, invalid("input is not a supported image (png, jpeg, gif, webp): %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, invalid("input %s image has an empty size %dx%d", format, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, invalid("input image is %dx%d (%.1f megapixels); the limit is %d megapixels",
			cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, MaxPixels/1_000_000)
	}
	img, err := imaging.Decode(bytes.NewReader(data), imaging.AutoOrientation(true))
	if err != nil {
		return nil, invalid("decoding %s image: %w", format, err)
	}
	return img, ctx.Err()
}

// adjust applies the adjustments that change something, in a fixed order:
// gamma, then contrast, brightness and saturation.
func adjust(img image.Image, f AdjustRequest) image.Image {
	if f.Gamma != 1 {
		img = imaging.AdjustGamma(img, f.Gamma)
	}
	if f.Contrast != 0 {
		img = imaging.AdjustContrast(img, f.Contrast)
	}
	if f.Brightness != 0 {
		img = imaging.AdjustBrightness(img, f.Brightness)
	}
	if f.Saturation != 0 {
		img = imaging.AdjustSaturation(img, f.Saturation)
	}
	return img
}

// classifyFetchError classifies a failed input fetch: a refused or
// malformed URL, a missing artifact, an input over the size limit or a 4xx
// answer is invalid input; network errors, 5xx, 408 and 429 leave the
// input's server unavailable, which is retried.
func classifyFetchError(err error) error {
	err = fmt.Errorf("fetching image: %w", err)
	var se *artifact.StatusError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &se):
		if se.Temporary() {
			return executor.Classify(executor.ProviderUnavailable, err)
		}
		return executor.Classify(executor.InvalidInput, err)
	case errors.Is(err, netguard.ErrForbiddenDestination),
		errors.Is(err, artifact.ErrUnsupportedURL),
		errors.Is(err, artifact.ErrInvalidKey),
		errors.Is(err, artifact.ErrNotFound),
		errors.Is(err, artifact.ErrTooLarge):
		return executor.Classify(executor.InvalidInput, err)
	}
	return executor.Classify(executor.ProviderUnavailable, err)
}
