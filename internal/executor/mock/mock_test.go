package mock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor/mock"
)

func render(t *testing.T, e *mock.Executor, req mock.ImageRequest) *mock.Image {
	t.Helper()
	img, err := e.RenderImage(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestRenderIsDeterministic(t *testing.T) {
	t.Parallel()
	var e mock.Executor
	req := mock.ImageRequest{Prompt: "a red dress", Seed: 42, Width: 96, Height: 64}
	a, b := render(t, &e, req), render(t, &e, req)
	if !bytes.Equal(a.PNG, b.PNG) {
		t.Fatal("same request gave different bytes")
	}
	for _, other := range []mock.ImageRequest{
		{Prompt: "a red dress", Seed: 43, Width: 96, Height: 64},
		{Prompt: "a blue dress", Seed: 42, Width: 96, Height: 64},
	} {
		if c := render(t, &e, other); bytes.Equal(a.PNG, c.PNG) {
			t.Errorf("%+v gave the same bytes as %+v", other, req)
		}
	}
}

// The picture has a subject for a background removal to keep: a uniform
// ellipse in the middle (its centre and the points at 90 % of its radii
// are one hue, darker outwards), and around it the striped background.
func TestRenderHasASubject(t *testing.T) {
	t.Parallel()
	img, err := png.Decode(bytes.NewReader(render(t, &mock.Executor{}, mock.ImageRequest{Prompt: "an armchair", Seed: 7, Width: 200, Height: 100}).PNG))
	if err != nil {
		t.Fatal(err)
	}
	at := func(x, y int) color.NRGBA { return color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA) }
	centre := at(100, 50)
	// 90 % of the radii: 0.9 × 60 px across, 0.9 × 40 px down.
	for _, p := range [][2]int{{154, 50}, {46, 50}, {100, 86}, {100, 14}} {
		edge := at(p[0], p[1])
		if edge.R > centre.R || edge.G > centre.G || edge.B > centre.B || edge == centre {
			t.Errorf("%v inside the ellipse is %v, want the centre's %v, darker", p, edge, centre)
		}
	}
	corners := []color.NRGBA{at(0, 0), at(199, 0), at(0, 99), at(199, 99)}
	for _, c := range corners {
		if c == centre {
			t.Errorf("a corner has the subject's colour %v", c)
		}
	}
}

func TestRenderSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		maxSide       int
		width, height int
		wantW, wantH  int
	}{
		{name: "small", width: 64, height: 128, wantW: 64, wantH: 128},
		{name: "at the cap", width: 1024, height: 1024, wantW: 1024, wantH: 1024},
		{name: "square over the cap", width: 4096, height: 4096, wantW: 1024, wantH: 1024},
		{name: "wide over the cap", width: 4096, height: 1024, wantW: 1024, wantH: 256},
		{name: "tall, custom cap", maxSide: 100, width: 64, height: 400, wantW: 16, wantH: 100},
		{name: "extreme ratio keeps one pixel", maxSide: 100, width: 8, height: 4096, wantW: 1, wantH: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := &mock.Executor{MaxSide: tt.maxSide}
			img := render(t, e, mock.ImageRequest{Prompt: "p", Seed: 1, Width: tt.width, Height: tt.height})
			cfg, err := png.DecodeConfig(bytes.NewReader(img.PNG))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Width != tt.wantW || cfg.Height != tt.wantH || img.Width != tt.wantW || img.Height != tt.wantH {
				t.Errorf("decoded %dx%d, reported %dx%d, want %dx%d", cfg.Width, cfg.Height, img.Width, img.Height, tt.wantW, tt.wantH)
			}
		})
	}
}

func TestRenderProgress(t *testing.T) {
	t.Parallel()
	var got []string
	_, err := (&mock.Executor{}).RenderImage(context.Background(), mock.ImageRequest{Prompt: "p", Width: 8, Height: 8},
		func(_ context.Context, pct float64, stage string) error {
			got = append(got, fmt.Sprintf("%g %s", pct, stage))
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want := "[10 preparing 40 rendering 70 encoding 100 done]"
	if fmt.Sprint(got) != want {
		t.Errorf("progress %v, want %s", got, want)
	}
}

func TestRenderStopsOnProgressError(t *testing.T) {
	t.Parallel()
	stop := errors.New("lost the task")
	calls := 0
	_, err := (&mock.Executor{}).RenderImage(context.Background(), mock.ImageRequest{Prompt: "p", Width: 8, Height: 8},
		func(context.Context, float64, string) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("got %v after %d calls, want the progress error after 1", err, calls)
	}
}

func TestRenderHonoursCancellation(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	e := &mock.Executor{StepDelay: time.Hour}
	done := make(chan error, 1)
	go func() {
		_, err := e.RenderImage(ctx, mock.ImageRequest{Prompt: "p", Width: 8, Height: 8}, nil)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("render did not stop on cancellation")
	}
}

func TestRenderRejectsInvalidSize(t *testing.T) {
	t.Parallel()
	if _, err := (&mock.Executor{}).RenderImage(context.Background(), mock.ImageRequest{Width: 0, Height: 8}, nil); err == nil {
		t.Error("no error for width 0")
	}
}

func ExampleExecutor_RenderImage() {
	e := &mock.Executor{}
	img, err := e.RenderImage(context.Background(), mock.ImageRequest{Prompt: "a cat", Seed: 7, Width: 2048, Height: 1536}, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(img.Width, img.Height)
	// Output: 1024 768
}
