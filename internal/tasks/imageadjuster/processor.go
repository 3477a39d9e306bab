package imageadjuster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // decoders for image.DecodeConfig and imaging.Decode
	_ "image/jpeg"
	_ "image/png"

	"github.com/disintegration/imaging"
	_ "golang.org/x/image/webp"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// MaxPixels is the largest input image, in pixels (50 megapixels). It is
// checked from the image header before decoding, so a small file that
// claims a huge size cannot make the worker allocate gigabytes.
const MaxPixels = 50_000_000

// jpegQuality is the quality of JPEG results.
const jpegQuality = 90

// Output is the result data of an image_adjuster task.
type Output struct {
	// Width and Height are the size of the image.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Format is the format of the result (png or jpeg).
	Format string `json:"format"`
}

// Processor runs image_adjuster tasks.
type Processor struct {
	fetcher *artifact.Fetcher
}

var _ registry.ProcessorOf[Fields] = (*Processor)(nil)

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	if provider := job.Task.ProviderType; provider != "" && provider != ProviderLocal {
		return nil, task.Permanent(fmt.Errorf("provider %s is not available for %s", provider, Name))
	}
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	if err := job.Progress(ctx, 5, "fetching image"); err != nil {
		return nil, err
	}
	data, _, err := p.fetcher.Open(ctx, job.Task.OriginTenantID, f.ImageURL)
	if err != nil {
		return nil, classifyFetchError(err)
	}

	if err := job.Progress(ctx, 30, "decoding"); err != nil {
		return nil, err
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, task.Permanent(fmt.Errorf("input is not a supported image (png, jpeg, gif, webp): %w", err))
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, task.Permanent(fmt.Errorf("input %s image has an empty size %dx%d", format, cfg.Width, cfg.Height))
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, task.Permanent(fmt.Errorf("input image is %dx%d (%.1f megapixels); the limit is %d megapixels",
			cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, MaxPixels/1_000_000))
	}
	img, err := imaging.Decode(bytes.NewReader(data), imaging.AutoOrientation(true))
	if err != nil {
		return nil, task.Permanent(fmt.Errorf("decoding %s image: %w", format, err))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if err := job.Progress(ctx, 50, "adjusting"); err != nil {
		return nil, err
	}
	img = adjust(img, f)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if err := job.Progress(ctx, 80, "encoding"); err != nil {
		return nil, err
	}
	name, contentType, encFormat := "adjusted.png", "image/png", imaging.PNG
	if f.OutputFormat == FormatJPEG {
		name, contentType, encFormat = "adjusted.jpg", "image/jpeg", imaging.JPEG
	}
	var buf bytes.Buffer
	if err := imaging.Encode(&buf, img, encFormat, imaging.JPEGQuality(jpegQuality)); err != nil {
		return nil, fmt.Errorf("encoding %s: %w", f.OutputFormat, err)
	}
	art, err := job.PutArtifact(ctx, name, contentType, buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("storing image: %w", err)
	}
	art.Width, art.Height = img.Bounds().Dx(), img.Bounds().Dy()
	key := art.Key
	f.ResultImagePath = &key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	b := img.Bounds()
	return &task.Result{
		Artifacts: []task.Artifact{art},
		Data:      Output{Width: b.Dx(), Height: b.Dy(), Format: f.OutputFormat},
	}, nil
}

// adjust applies the adjustments that change something, in a fixed order:
// gamma, then contrast, brightness and saturation.
func adjust(img image.Image, f *Fields) image.Image {
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

// classifyFetchError marks the fetch failures a retry cannot fix as
// permanent: a refused or malformed URL, a missing artifact, an input over
// the size limit, a 4xx answer. Network errors, 5xx, 408 and 429 stay
// retryable.
func classifyFetchError(err error) error {
	err = fmt.Errorf("fetching image: %w", err)
	var se *artifact.StatusError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &se):
		if se.Temporary() {
			return err
		}
		return task.Permanent(err)
	case errors.Is(err, netguard.ErrForbiddenDestination),
		errors.Is(err, artifact.ErrUnsupportedURL),
		errors.Is(err, artifact.ErrInvalidKey),
		errors.Is(err, artifact.ErrNotFound),
		errors.Is(err, artifact.ErrTooLarge):
		return task.Permanent(err)
	}
	return err
}
