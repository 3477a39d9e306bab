package comfyfake

import (
	"image"
	"testing"
)

func TestImageOperations(t *testing.T) {
	t.Parallel()
	// A white dot on black: the blur spreads it symmetrically and keeps
	// the total brightness; invert turns black to white.
	dot := solidImage(9, 9, 0)
	dot.Pix[dot.PixOffset(4, 4)], dot.Pix[dot.PixOffset(4, 4)+1], dot.Pix[dot.PixOffset(4, 4)+2] = 255, 255, 255
	blurred := blurImage(dot, 2, 1.0)
	centre, side, far := blurred.NRGBAAt(4, 4).R, blurred.NRGBAAt(5, 4).R, blurred.NRGBAAt(8, 8).R
	if !(centre > side && side > far) || blurred.NRGBAAt(3, 4).R != side || blurred.NRGBAAt(4, 5).R != side {
		t.Errorf("blur: centre %d side %d far %d", centre, side, far)
	}
	if got := invertImage(solidImage(2, 2, 0x102030)).NRGBAAt(1, 1); got.R != 0xef || got.G != 0xdf || got.B != 0xcf {
		t.Errorf("invert = %v", got)
	}

	// Left half red, right half blue, 4×2.
	halves := solidImage(4, 2, 0xFF0000)
	for y := 0; y < 2; y++ {
		for x := 2; x < 4; x++ {
			halves.SetNRGBA(x, y, blueC)
		}
	}
	tests := []struct {
		name       string
		method     string
		w, h       int
		crop       string
		wantBounds image.Rectangle
		left       uint8 // red channel at (0,0)
		right      uint8 // red channel at the last column
	}{
		{"nearest double", "nearest-exact", 8, 4, "disabled", image.Rect(0, 0, 8, 4), 255, 0},
		{"keep aspect from height", "bilinear", 0, 4, "disabled", image.Rect(0, 0, 8, 4), 255, 0},
		{"keep aspect from width", "bicubic", 2, 0, "disabled", image.Rect(0, 0, 2, 1), 255, 0},
		{"center crop to a square keeps the middle", "nearest-exact", 2, 2, "center", image.Rect(0, 0, 2, 2), 255, 0},
		{"both zero keep the image", "area", 0, 0, "disabled", image.Rect(0, 0, 4, 2), 255, 0},
	}
	for _, tt := range tests {
		got := scaleImage(halves, tt.method, tt.w, tt.h, tt.crop)
		if got.Rect != tt.wantBounds {
			t.Errorf("%s: bounds %v, want %v", tt.name, got.Rect, tt.wantBounds)
			continue
		}
		// Interpolating methods blend at the border: allow a margin.
		if l, r := got.NRGBAAt(0, 0).R, got.NRGBAAt(got.Rect.Dx()-1, 0).R; diff(l, tt.left) > 40 || diff(r, tt.right) > 40 {
			t.Errorf("%s: red left %d right %d", tt.name, l, r)
		}
	}
	// A crop that would leave nothing uses the whole image instead.
	if got := scaleImage(halves, "nearest-exact", 1, 100, "center"); got.Rect != image.Rect(0, 0, 1, 100) {
		t.Errorf("extreme crop: %v", got.Rect)
	}
	if uniform(halves) || !uniform(solidImage(3, 3, 5)) {
		t.Error("uniform is wrong")
	}
}

var blueC = solidImage(1, 1, 0x0000FF).NRGBAAt(0, 0)

func diff(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
