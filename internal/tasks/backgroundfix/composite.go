package backgroundfix

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"image/png"
	"strconv"

	"github.com/disintegration/imaging"
)

// ParseColor reads a colour written #rrggbb.
func ParseColor(s string) (color.NRGBA, error) {
	if len(s) != 7 || s[0] != '#' {
		return color.NRGBA{}, fmt.Errorf("must be a colour written #rrggbb, is %q", s)
	}
	v, err := strconv.ParseUint(s[1:], 16, 32)
	if err != nil {
		return color.NRGBA{}, fmt.Errorf("must be a colour written #rrggbb, is %q", s)
	}
	return color.NRGBA{R: uint8(v >> 16), G: uint8(v >> 8), B: uint8(v), A: 255}, nil
}

// Plain is a background of one colour, of size r.
func Plain(c color.NRGBA, r image.Rectangle) *image.NRGBA {
	bg := image.NewNRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(bg, bg.Bounds(), &image.Uniform{C: c}, image.Point{}, draw.Src)
	return bg
}

// Cover scales and centre-crops img to exactly the size of r (as CSS's
// background-size: cover), so a background of any shape fills the frame.
func Cover(img image.Image, r image.Rectangle) *image.NRGBA {
	return imaging.Fill(img, r.Dx(), r.Dy(), imaging.Center, imaging.Lanczos)
}

// Composite lays cutout over bg (the same size) by its alpha channel and
// returns an opaque image: the subject on its new background.
func Composite(bg *image.NRGBA, cutout image.Image) *image.NRGBA {
	out := image.NewNRGBA(bg.Bounds())
	draw.Draw(out, out.Bounds(), bg, bg.Bounds().Min, draw.Src)
	draw.Draw(out, out.Bounds(), cutout, cutout.Bounds().Min, draw.Over)
	// Make it fully opaque: a background with transparency of its own
	// (a PNG) must not leave holes.
	for i := 3; i < len(out.Pix); i += 4 {
		out.Pix[i] = 255
	}
	return out
}

// Encode writes img as format (png or jpeg) and returns the bytes, the
// file name and the content type.
func Encode(img image.Image, format string) ([]byte, string, string, error) {
	var buf bytes.Buffer
	if format == FormatJPEG {
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 92}); err != nil {
			return nil, "", "", err
		}
		return buf.Bytes(), "result.jpg", "image/jpeg", nil
	}
	if err := png.Encode(&buf, img); err != nil {
		return nil, "", "", err
	}
	return buf.Bytes(), "result.png", "image/png", nil
}
