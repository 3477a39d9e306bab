package local

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"

	"github.com/disintegration/imaging"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// OpEnhanceDetails brings out the detail of the image at the field
// image_url with an unsharp mask (DetailsRequest): the detail_enhancer
// task type's local operation. The result is a PNG (alpha kept).
const OpEnhanceDetails = "enhance_details"

// MaxDetailAmount is the unsharp mask's amount at strength 1.
const MaxDetailAmount = 2.0

// DetailsRequest is what OpEnhanceDetails reads from the job's fields.
type DetailsRequest struct {
	ImageURL string `json:"image_url"`
	// Strength (0–1) sets the amount: MaxDetailAmount × strength.
	Strength float64 `json:"strength"`
	// Radius is the Gaussian's sigma in pixels (0.3–20).
	Radius float64 `json:"radius"`
}

func decodeDetails(job *executor.Job) (DetailsRequest, error) {
	var r DetailsRequest
	if err := json.Unmarshal(job.Fields, &r); err != nil {
		return r, executor.Errorf(executor.InvalidInput, "local: reading fields: %w", err)
	}
	switch {
	case r.ImageURL == "":
		return r, executor.Errorf(executor.InvalidInput, "local: image_url is required")
	case r.Strength < 0 || r.Strength > 1:
		return r, executor.Errorf(executor.InvalidInput, "local: strength must be between 0 and 1, is %g", r.Strength)
	case r.Radius < 0.3 || r.Radius > 20:
		return r, executor.Errorf(executor.InvalidInput, "local: radius must be between 0.3 and 20, is %g", r.Radius)
	}
	return r, nil
}

// enhanceDetails fetches, decodes, sharpens, encodes and stores the image.
func enhanceDetails(ctx context.Context, job *executor.Job, f DetailsRequest, r executor.Reporter) (*executor.Output, error) {
	if err := r.Progress(ctx, 5, "fetching image"); err != nil {
		return nil, err
	}
	img, err := loadImage(ctx, job, f.ImageURL, func() error { return r.Progress(ctx, 30, "decoding") })
	if err != nil {
		return nil, err
	}
	if err := r.Progress(ctx, 50, "enhancing details"); err != nil {
		return nil, err
	}
	out := Unsharp(img, f.Radius, MaxDetailAmount*f.Strength)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.Progress(ctx, 80, "encoding"); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, out); err != nil {
		return nil, fmt.Errorf("encoding png: %w", err)
	}
	art, err := job.Put(ctx, "enhanced.png", "image/png", buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("storing image: %w", err)
	}
	b := out.Bounds()
	art.Width, art.Height = b.Dx(), b.Dy()
	return &executor.Output{Artifacts: []task.Artifact{art}, Data: map[string]any{"width": b.Dx(), "height": b.Dy()}}, nil
}

// Unsharp returns img with an unsharp mask: each colour channel moved
// away from its Gaussian blur of sigma radius by amount (out = in +
// amount·(in − blur)), clamped; alpha is kept. It raises local contrast at
// edges and texture at the scale of radius — what the eye reads as detail
// — and leaves flat areas as they are.
func Unsharp(img image.Image, radius, amount float64) *image.NRGBA {
	src := imaging.Clone(img)
	blur := imaging.Blur(src, radius)
	out := image.NewNRGBA(src.Bounds())
	for i := 0; i < len(src.Pix); i += 4 {
		for c := range 3 {
			v := float64(src.Pix[i+c]) + amount*(float64(src.Pix[i+c])-float64(blur.Pix[i+c]))
			out.Pix[i+c] = uint8(min(255, max(0, v+0.5)))
		}
		out.Pix[i+3] = src.Pix[i+3]
	}
	return out
}
