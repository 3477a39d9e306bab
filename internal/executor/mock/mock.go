// Package mock is the deterministic executor for development and tests: it
// "generates" images without a GPU or a network. The same request always
// gives a byte-identical PNG, so tests can compare outputs, and different
// prompts or seeds give visibly different pictures.
package mock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"strconv"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/inproc"
)

// DefaultMaxSide is the longest side the executor renders when
// Executor.MaxSide is 0.
const DefaultMaxSide = 1024

// ImageRequest is one image to render.
type ImageRequest struct {
	// Prompt and Seed select the picture.
	Prompt string
	Seed   int64
	// Width and Height are the requested size in pixels (at least 1).
	Width, Height int
}

// Image is a rendered PNG.
type Image struct {
	// PNG is the encoded image.
	PNG []byte
	// Width and Height are the rendered size: the requested size, scaled
	// down to fit Executor.MaxSide.
	Width, Height int
}

// ProgressFunc receives progress (0–100) and a stage text. An error stops
// the render and is returned by RenderImage.
type ProgressFunc func(ctx context.Context, percent float64, stage string) error

// Executor renders deterministic images, directly (RenderImage) or as an
// executor.Executor named "mock" (see seam.go). The zero value is ready to
// use; New configures one from the config file.
type Executor struct {
	// StepDelay is slept before each progress step (four per image), to
	// make progress visible in development; 0 in tests. The sleep ends
	// early when the context is cancelled.
	StepDelay time.Duration
	// MaxSide caps the rendered size (0: DefaultMaxSide). A request larger
	// than the cap is rendered scaled down, keeping its aspect ratio, so a
	// 4096×4096 request allocates a 1024×1024 image (4 MB) instead of
	// 64 MB: the mock stands in for a GPU, it must not need the memory of
	// one.
	MaxSide int

	// Hook, when set, runs when a job starts running, before it renders;
	// an error from it fails the job. Tests use it to hold a job while it
	// runs or to fail it with a chosen category.
	Hook func(ctx context.Context, job *executor.Job) error

	name     string
	jobs     *inproc.Jobs
	initJobs sync.Once
}

// FitSize returns the size RenderImage renders for a requested size: the
// same size, or scaled down so the longest side is MaxSide.
func (e *Executor) FitSize(width, height int) (int, int) {
	limit := e.MaxSide
	if limit <= 0 {
		limit = DefaultMaxSide
	}
	width, height = max(width, 1), max(height, 1)
	longest := max(width, height)
	if longest <= limit {
		return width, height
	}
	scale := func(v int) int { return max(1, (v*limit+longest/2)/longest) }
	return scale(width), scale(height)
}

// RenderImage renders the picture for req, reporting progress at 10, 40, 70
// and 100 percent through progress (which may be nil).
func (e *Executor) RenderImage(ctx context.Context, req ImageRequest, progress ProgressFunc) (*Image, error) {
	if req.Width <= 0 || req.Height <= 0 {
		return nil, fmt.Errorf("mock: invalid size %dx%d", req.Width, req.Height)
	}
	step := func(percent float64, stage string) error {
		if err := e.sleep(ctx); err != nil {
			return err
		}
		if progress == nil {
			return nil
		}
		return progress(ctx, percent, stage)
	}
	if err := step(10, "preparing"); err != nil {
		return nil, err
	}
	w, h := e.FitSize(req.Width, req.Height)
	if err := step(40, "rendering"); err != nil {
		return nil, err
	}
	img := render(palette(req.Prompt, req.Seed), w, h)
	if err := step(70, "encoding"); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("mock: encoding png: %w", err)
	}
	if err := step(100, "done"); err != nil {
		return nil, err
	}
	return &Image{PNG: buf.Bytes(), Width: w, Height: h}, nil
}

func (e *Executor) sleep(ctx context.Context) error {
	if e.StepDelay <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(e.StepDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// params are the picture's parameters, all derived from one hash.
type params struct {
	from, to, stripe color.NRGBA
	// subject is the colour of the shaded ellipse in the middle.
	subject color.NRGBA
	// dx, dy give the stripes' direction; period their spacing in pixels.
	dx, dy, period int
}

func palette(prompt string, seed int64) params {
	h := sha256.Sum256([]byte(prompt + "\x00" + strconv.FormatInt(seed, 10)))
	rgb := func(b []byte) color.NRGBA { return color.NRGBA{b[0], b[1], b[2], 255} }
	return params{
		from:    rgb(h[0:3]),
		to:      rgb(h[3:6]),
		stripe:  rgb(h[6:9]),
		subject: rgb(h[13:16]),
		dx:      int(h[9]%5) + 1,
		dy:      int(h[10]%5) + 1,
		period:  int(binary.BigEndian.Uint16(h[11:13])%48) + 16,
	}
}

// render draws a diagonal gradient from p.from to p.to with translucent
// stripes of p.stripe, and in front of it a subject: an ellipse of
// p.subject (60 % of the width, 80 % of the height, centred), darker towards
// its edge. The subject gives a background removal downstream of the mock
// something to cut out (ISNet keeps the ellipse and drops the rest).
// Integer arithmetic only, so it is exact everywhere.
func render(p params, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	span := (w - 1) + (h - 1)
	if span == 0 {
		span = 1
	}
	mix := func(a, b uint8, t, n int) uint8 { return uint8((int(a)*(n-t) + int(b)*t) / n) }
	// The ellipse in fixed point: a pixel's offset from the centre over
	// the radius, in units of 1/one.
	const one = 1024
	ellipse := func(v, n, tenths int) int { return (2*v - n + 1) * 5 * one / (tenths * n) }
	shade := func(c uint8, d int) uint8 { return uint8(int(c) * (2*one*one - d) / (2 * one * one)) }
	for y := range h {
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		ey := ellipse(y, h, 4)
		for x := range w {
			t := x + y
			r, g, b := mix(p.from.R, p.to.R, t, span), mix(p.from.G, p.to.G, t, span), mix(p.from.B, p.to.B, t, span)
			if ((x*p.dx+y*p.dy)/p.period)%3 == 0 {
				r, g, b = mix(r, p.stripe.R, 1, 2), mix(g, p.stripe.G, 1, 2), mix(b, p.stripe.B, 1, 2)
			}
			ex := ellipse(x, w, 3)
			if d := ex*ex + ey*ey; d <= one*one {
				r, g, b = shade(p.subject.R, d), shade(p.subject.G, d), shade(p.subject.B, d)
			}
			i := 4 * x
			row[i], row[i+1], row[i+2], row[i+3] = r, g, b, 255
		}
	}
	return img
}
