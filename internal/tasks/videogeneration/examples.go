package videogeneration

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
	exampleImageKey    = "examples/video_generation/source.png"
	exampleNotImageKey = "examples/video_generation/not-an-image.png"
)

// examplePNG is a 64×48 gradient with a bright square: small, and the
// motion shows on it.
var examplePNG = sync.OnceValue(func() []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			c := color.NRGBA{uint8(40 + 3*x), uint8(60 + 4*y), 140, 255}
			if x >= 24 && x < 40 && y >= 16 && y < 32 {
				c = color.NRGBA{250, 240, 200, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory image cannot fail
	}
	return buf.Bytes()
})

// examples are the type's sample tasks for the conformance suite: a one
// second clip rendered by the local executor (ffmpeg), and a source that
// is not an image.
func examples() []registry.Example {
	return []registry.Example{
		{
			Name: "a one-second pan-and-zoom clip on the local executor",
			Body: map[string]any{"image_url": artifact.PathPrefix + exampleImageKey, "prompt": "the camera glides over a linen dress",
				"duration": 1, "fps": 8, "width": 64, "height": 48, "motion": "zoom_in"},
			Inputs:     []registry.ExampleInput{{Key: exampleImageKey, ContentType: "image/png", Data: examplePNG()}},
			WantStatus: task.StatusCompleted,
		},
		{
			Name:       "a source that is not an image",
			Body:       map[string]any{"image_url": artifact.PathPrefix + exampleNotImageKey, "duration": 1, "fps": 8},
			Inputs:     []registry.ExampleInput{{Key: exampleNotImageKey, ContentType: "image/png", Data: []byte("this is not a picture")}},
			WantStatus: task.StatusFailed,
			WantError:  "not a supported image",
		},
	}
}
