package detailenhancer

import (
	"image"

	"github.com/disintegration/imaging"
)

// MaxAmount is the unsharp mask's amount at strength 1.
const MaxAmount = 2.0

// Unsharp returns img with an unsharp mask: each channel moved away from
// its Gaussian blur of sigma radius by amount (out = in + amount·(in −
// blur)), clamped; alpha is kept. It raises local contrast at edges and
// texture at the scale of radius — what "detail" is to the eye — without
// changing flat areas.
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
