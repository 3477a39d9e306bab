package imagetask

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"sync"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// ExamplePNG is a 32×24 picture: a disc on a plain background, opaque.
var ExamplePNG = sync.OnceValue(func() []byte { return encode(discImage(false)) })

// ExampleCutoutPNG is ExamplePNG's disc on a transparent background: what
// a background removal returns.
var ExampleCutoutPNG = sync.OnceValue(func() []byte { return encode(discImage(true)) })

func discImage(cutout bool) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, 32, 24))
	for y := range 24 {
		for x := range 32 {
			dx, dy := x-16, y-12
			switch {
			case dx*dx+dy*dy <= 64:
				img.SetNRGBA(x, y, color.NRGBA{200, uint8(80 + 4*x), 60, 255})
			case cutout:
				img.SetNRGBA(x, y, color.NRGBA{})
			default:
				img.SetNRGBA(x, y, color.NRGBA{40, 90, uint8(150 + 3*y), 255})
			}
		}
	}
	return img
}

func encode(img image.Image) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory image cannot fail
	}
	return buf.Bytes()
}

// Examples are the sample tasks of an image type for the conformance
// suite: one on the mock (a placeholder result: the suite's server has no
// local models) that completes, and one whose input is not an image, which
// fails before any executor runs. extra is merged into both bodies.
func Examples(typeName string, extra map[string]any) []registry.Example {
	imageKey := "examples/" + typeName + "/sample.png"
	notImageKey := "examples/" + typeName + "/not-an-image.png"
	body := func(key string, more map[string]any) map[string]any {
		b := map[string]any{"image_url": artifact.PathPrefix + key}
		for k, v := range extra {
			b[k] = v
		}
		for k, v := range more {
			b[k] = v
		}
		return b
	}
	return []registry.Example{
		{
			Name:       "a placeholder result on the mock",
			Body:       body(imageKey, map[string]any{"provider_type": KindMock}),
			Inputs:     []registry.ExampleInput{{Key: imageKey, ContentType: "image/png", Data: ExamplePNG()}},
			WantStatus: task.StatusCompleted,
		},
		{
			Name:       "an input that is not an image",
			Body:       body(notImageKey, map[string]any{"provider_type": KindMock}),
			Inputs:     []registry.ExampleInput{{Key: notImageKey, ContentType: "image/png", Data: []byte("this is not a picture")}},
			WantStatus: task.StatusFailed,
			WantError:  "not a supported image",
		},
	}
}
