package comfyfake

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/gif" // LoadImage accepts what ComfyUI's Pillow reads; GIF and JPEG are the common ones.
	_ "image/jpeg"
	"image/png"
	"math"

	xdraw "golang.org/x/image/draw"
)

// The image operations below are the model-free nodes of executors.md §1.4
// (EmptyImage, ImageBlur, ImageInvert, ImageScale, LoadImage, SaveImage),
// done for real on small images so that outputs are genuine PNGs whose
// pixels a test can check. A ComfyUI IMAGE is a batch; here it is a slice.

// solidImage is EmptyImage's picture: every pixel the 0xRRGGBB colour.
func solidImage(width, height int, rgb int64) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, width, height))
	c := color.NRGBA{R: uint8(rgb >> 16), G: uint8(rgb >> 8), B: uint8(rgb), A: 255}
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, c.A
	}
	return img
}

// invertImage is ImageInvert: 1 - x on every colour channel.
func invertImage(src *image.NRGBA) *image.NRGBA {
	dst := image.NewNRGBA(src.Rect)
	for i := 0; i < len(src.Pix); i += 4 {
		dst.Pix[i] = 255 - src.Pix[i]
		dst.Pix[i+1] = 255 - src.Pix[i+1]
		dst.Pix[i+2] = 255 - src.Pix[i+2]
		dst.Pix[i+3] = 255
	}
	return dst
}

// blurImage is ImageBlur: a separable Gaussian of the given radius and
// sigma with reflected edges (comfy_extras/nodes_post_processing.py Blur).
func blurImage(src *image.NRGBA, radius int, sigma float64) *image.NRGBA {
	if radius <= 0 || uniform(src) {
		return src // a normalised kernel leaves a constant image as it is
	}
	kernel := make([]float64, 2*radius+1)
	var sum float64
	for i := range kernel {
		d := float64(i - radius)
		kernel[i] = math.Exp(-d * d / (2 * sigma * sigma))
		sum += kernel[i]
	}
	for i := range kernel {
		kernel[i] /= sum
	}
	w, h := src.Rect.Dx(), src.Rect.Dy()
	// blurLine convolves n pixels read from in at offsets start+i*step
	// into out at the same offsets.
	blurLine := func(in, out []uint8, start, step, n int, line [][3]float64) {
		for i := 0; i < n; i++ {
			o := start + i*step
			line[i] = [3]float64{float64(in[o]), float64(in[o+1]), float64(in[o+2])}
		}
		for i := 0; i < n; i++ {
			var r, g, b float64
			for k, kv := range kernel {
				p := line[reflectIndex(i+k-radius, n)]
				r += kv * p[0]
				g += kv * p[1]
				b += kv * p[2]
			}
			o := start + i*step
			out[o], out[o+1], out[o+2], out[o+3] = clamp8(r), clamp8(g), clamp8(b), 255
		}
	}
	tmp := image.NewNRGBA(src.Rect)
	dst := image.NewNRGBA(src.Rect)
	line := make([][3]float64, max(w, h))
	for y := 0; y < h; y++ {
		blurLine(src.Pix, tmp.Pix, y*src.Stride, 4, w, line)
	}
	for x := 0; x < w; x++ {
		blurLine(tmp.Pix, dst.Pix, x*4, tmp.Stride, h, line)
	}
	return dst
}

// uniform reports whether every pixel of img has the same colour.
func uniform(img *image.NRGBA) bool {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if w == 0 || h == 0 {
		return true
	}
	first := img.Pix[0:4]
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for i := 0; i < len(row); i += 4 {
			if row[i] != first[0] || row[i+1] != first[1] || row[i+2] != first[2] || row[i+3] != first[3] {
				return false
			}
		}
	}
	return true
}

// reflectIndex maps an index outside [0,n) back inside like torch's 'reflect'
// padding (the edge pixel is not repeated).
func reflectIndex(i, n int) int {
	if n == 1 {
		return 0
	}
	for i < 0 || i >= n {
		if i < 0 {
			i = -i
		}
		if i >= n {
			i = 2*(n-1) - i
		}
	}
	return i
}

func clamp8(v float64) uint8 {
	return uint8(math.Max(0, math.Min(255, math.Round(v))))
}

// scaleImage is ImageScale (nodes.py): width or height 0 keeps the aspect
// ratio, both 0 keep the image; crop "center" first cuts the source to the
// target's aspect ratio.
func scaleImage(src *image.NRGBA, method string, width, height int, crop string) *image.NRGBA {
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	if width == 0 && height == 0 {
		return src
	}
	if width == 0 {
		width = max(1, int(math.Round(float64(sw)*float64(height)/float64(sh))))
	}
	if height == 0 {
		height = max(1, int(math.Round(float64(sh)*float64(width)/float64(sw))))
	}
	from := src.Rect
	if crop == "center" {
		oldAspect := float64(sw) / float64(sh)
		newAspect := float64(width) / float64(height)
		x, y := 0, 0
		if oldAspect > newAspect {
			x = int(math.Round((float64(sw) - float64(sw)*(newAspect/oldAspect)) / 2))
		} else if oldAspect < newAspect {
			y = int(math.Round((float64(sh) - float64(sh)*(oldAspect/newAspect)) / 2))
		}
		if r := image.Rect(src.Rect.Min.X+x, src.Rect.Min.Y+y, src.Rect.Max.X-x, src.Rect.Max.Y-y); !r.Empty() {
			from = r
		}
	}
	var scaler xdraw.Interpolator
	switch method {
	case "nearest-exact":
		scaler = xdraw.NearestNeighbor
	case "bilinear", "area":
		scaler = xdraw.BiLinear
	default: // bicubic, lanczos
		scaler = xdraw.CatmullRom
	}
	if uniform(src) {
		// Every interpolation of a constant image is that constant (the
		// weights sum to 1): skip the arithmetic, which is slow under -race.
		c := src.Pix[0:3]
		return solidImage(width, height, int64(c[0])<<16|int64(c[1])<<8|int64(c[2]))
	}
	// x/image/draw's fast paths write *image.RGBA; the images are opaque,
	// so its bytes are the NRGBA bytes.
	opaque := &image.RGBA{Pix: src.Pix, Stride: src.Stride, Rect: src.Rect}
	dst := image.NewRGBA(image.Rect(0, 0, width, height))
	scaler.Scale(dst, dst.Rect, opaque, from, xdraw.Src, nil)
	return &image.NRGBA{Pix: dst.Pix, Stride: dst.Stride, Rect: dst.Rect}
}

// decodeImage reads an uploaded file as LoadImage does: any format the
// standard library knows, converted to RGB.
func decodeImage(data []byte) (*image.NRGBA, error) {
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decoding image: %w", err)
	}
	dst := image.NewNRGBA(image.Rect(0, 0, img.Bounds().Dx(), img.Bounds().Dy()))
	draw.Draw(dst, dst.Rect, image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(dst, dst.Rect, img, img.Bounds().Min, draw.Over)
	return dst, nil
}

// encodePNG is SaveImage's file format.
func encodePNG(img *image.NRGBA) ([]byte, error) {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encoding png: %w", err)
	}
	return buf.Bytes(), nil
}
