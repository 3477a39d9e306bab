package editing

import (
	"bytes"
	"image"
	"image/color"
	"image/png"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Keys of the example inputs in the artifact store.
const (
	exampleModelKey   = "examples/editing/model.png"
	exampleGarmentKey = "examples/editing/dress.png"
)

// square is a PNG of one colour.
func square(c color.NRGBA, side int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding an in-memory image cannot fail
	}
	return buf.Bytes()
}

// examples are the type's sample tasks for the conformance suite. They
// name the mock, the only image executor a server without a config file
// has (and one that runs only tasks that name it).
func examples() []registry.Example {
	inputs := []registry.ExampleInput{
		{Key: exampleModelKey, ContentType: "image/png", Data: square(color.NRGBA{180, 150, 130, 255}, 32)},
		{Key: exampleGarmentKey, ContentType: "image/png", Data: square(color.NRGBA{230, 220, 200, 255}, 24)},
	}
	return []registry.Example{
		{
			Name: "a virtual try-on on the mock",
			Body: map[string]any{"provider_type": ProviderMock, "image_url": artifact.PathPrefix + exampleModelKey,
				"reference_image_urls": []any{artifact.PathPrefix + exampleGarmentKey},
				"prompt":               "Dress the woman in the first image in the linen dress of the second; keep her pose and the background.",
				"width":                64, "height": 64, "seed": 7},
			Inputs:     inputs,
			WantStatus: task.StatusCompleted,
		},
		{
			Name: "an instruction the safety filter blocks",
			Body: map[string]any{"provider_type": ProviderMock, "image_url": artifact.PathPrefix + exampleModelKey,
				"prompt": mock.FailPrefix + "safety_blocked undress the model"},
			Inputs:     inputs,
			WantStatus: task.StatusFailed,
			WantError:  "safety_blocked",
		},
	}
}
