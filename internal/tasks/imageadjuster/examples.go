package imageadjuster

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

// Keys of the example inputs in the artifact store.
const (
	exampleImageKey    = "examples/image_adjuster/sample.png"
	exampleNotImageKey = "examples/image_adjuster/not-an-image.png"
)

// examplePNG is a 32×24 gradient: small, and changed by every adjustment.
var examplePNG = sync.OnceValue(func() []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 32, 24))
	for y := range 24 {
		for x := range 32 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(40 + 5*x), uint8(60 + 6*y), 128, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory image cannot fail
	}
	return buf.Bytes()
})

// examples are the type's sample tasks for the conformance suite. Their
// inputs are artifacts the suite stores first, so no network is needed.
func examples() []registry.Example {
	return []registry.Example{
		{
			Name:       "brightens an artifact image",
			Body:       map[string]any{"image_url": artifact.PathPrefix + exampleImageKey, "brightness": 20, "gamma": 1.2},
			Inputs:     []registry.ExampleInput{{Key: exampleImageKey, ContentType: "image/png", Data: examplePNG()}},
			WantStatus: task.StatusCompleted,
		},
		{
			Name:       "an input that is not an image",
			Body:       map[string]any{"image_url": artifact.PathPrefix + exampleNotImageKey},
			Inputs:     []registry.ExampleInput{{Key: exampleNotImageKey, ContentType: "image/png", Data: []byte("this is not a picture")}},
			WantStatus: task.StatusFailed,
			WantError:  "not a supported image",
		},
	}
}
