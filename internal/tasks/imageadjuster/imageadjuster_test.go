package imageadjuster_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/imageadjuster"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

// sample is a 64×48 mid-tone picture: every adjustment visibly changes it.
func sample(t testing.TB) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(60 + 2*x), uint8(70 + 2*y), 120, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hugePNG is a PNG header claiming width×height pixels, with no image data:
// only DecodeConfig can read it, which is all the size check needs.
func hugePNG(width, height uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], width)
	binary.BigEndian.PutUint32(ihdr[4:], height)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

// server serves test inputs on loopback.
func server(t *testing.T) *httptest.Server {
	t.Helper()
	img := sample(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/sample.png", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(img)
	})
	mux.HandleFunc("/huge.png", func(w http.ResponseWriter, _ *http.Request) { w.Write(hugePNG(10000, 6000)) })
	mux.HandleFunc("/text", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("this is not an image")) })
	mux.HandleFunc("/truncated.png", func(w http.ResponseWriter, _ *http.Request) { w.Write(img[:len(img)/2]) })
	mux.HandleFunc("/missing.png", http.NotFound)
	mux.HandleFunc("/down.png", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "overloaded", http.StatusBadGateway)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// loopbackFetcher may reach the test servers.
func loopbackFetcher() *artifact.Fetcher {
	return &artifact.Fetcher{Client: netguard.NewHTTPClient(netguard.Policy{AllowPrivate: true}, 10*time.Second)}
}

func fields(url string) *imageadjuster.Fields {
	return &imageadjuster.Fields{ImageURL: url, Gamma: 1, OutputFormat: "png"}
}

func process(t *testing.T, fetcher *artifact.Fetcher, f *imageadjuster.Fields) (*task.Result, *fakeruntime.Runtime, error) {
	t.Helper()
	job, rt := fakeruntime.NewJob(t, imageadjuster.Name, "local", f)
	res, err := imageadjuster.Type(fetcher, nil).Processor.Process(context.Background(), job)
	return res, rt, err
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(imageadjuster.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup("image_adjuster")
	if def == nil || def.Table != "image_adjuster_tasks" || def.DefaultProvider != "local" {
		t.Fatalf("definition %+v", def)
	}
	if len(def.UpdateFields) != 6 {
		t.Errorf("%d update fields, want 6", len(def.UpdateFields))
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		change    func(f *imageadjuster.Fields)
		wantField string
	}{
		{name: "valid", change: func(*imageadjuster.Fields) {}},
		{name: "artifact path", change: func(f *imageadjuster.Fields) { f.ImageURL = "/api/v1/artifacts/tasks/abc/image.png" }},
		{name: "extremes", change: func(f *imageadjuster.Fields) {
			f.Brightness, f.Contrast, f.Saturation, f.Gamma, f.OutputFormat = -100, 100, 500, 10, "jpeg"
		}},
		{name: "empty url", change: func(f *imageadjuster.Fields) { f.ImageURL = "" }, wantField: "image_url"},
		{name: "ftp url", change: func(f *imageadjuster.Fields) { f.ImageURL = "ftp://example.com/a.png" }, wantField: "image_url"},
		{name: "relative url", change: func(f *imageadjuster.Fields) { f.ImageURL = "images/a.png" }, wantField: "image_url"},
		{name: "bad artifact path", change: func(f *imageadjuster.Fields) { f.ImageURL = "/api/v1/artifacts/../etc/passwd" }, wantField: "image_url"},
		{name: "long url", change: func(f *imageadjuster.Fields) { f.ImageURL = "https://example.com/" + strings.Repeat("a", 2048) }, wantField: "image_url"},
		{name: "brightness", change: func(f *imageadjuster.Fields) { f.Brightness = 101 }, wantField: "brightness"},
		{name: "contrast", change: func(f *imageadjuster.Fields) { f.Contrast = -101 }, wantField: "contrast"},
		{name: "saturation", change: func(f *imageadjuster.Fields) { f.Saturation = 501 }, wantField: "saturation"},
		{name: "gamma", change: func(f *imageadjuster.Fields) { f.Gamma = 0.05 }, wantField: "gamma"},
		{name: "format", change: func(f *imageadjuster.Fields) { f.OutputFormat = "gif" }, wantField: "output_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fields("https://example.com/a.png")
			tt.change(f)
			err := f.Validate()
			if tt.wantField == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *registry.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("got %v, want a FieldError for %s", err, tt.wantField)
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	t.Parallel()
	f := &imageadjuster.Fields{ImageURL: "https://example.com/a.png"}
	f.ApplyDefaults()
	if f.Gamma != 1 || f.OutputFormat != "png" || f.Brightness != 0 {
		t.Errorf("defaults %+v", f)
	}
	if err := f.Validate(); err != nil {
		t.Error(err)
	}
}

// stats are the mean luminance and mean per-pixel channel spread of an
// image (spread 0 = grey).
func stats(t *testing.T, data []byte) (lum, spread float64, format string, size image.Point) {
	t.Helper()
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	n := float64(b.Dx() * b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			rf, gf, bf := float64(r>>8), float64(g>>8), float64(bl>>8)
			lum += (0.299*rf + 0.587*gf + 0.114*bf) / n
			spread += (max(rf, gf, bf) - min(rf, gf, bf)) / n
		}
	}
	return lum, spread, format, b.Size()
}

func TestAdjustments(t *testing.T) {
	t.Parallel()
	srv := server(t)
	baseLum, baseSpread, _, _ := stats(t, sample(t))
	tests := []struct {
		name   string
		change func(f *imageadjuster.Fields)
		check  func(t *testing.T, lum, spread float64)
	}{
		{name: "no change", change: func(*imageadjuster.Fields) {}, check: func(t *testing.T, lum, spread float64) {
			if lum != baseLum || spread != baseSpread {
				t.Errorf("luminance %.2f→%.2f, spread %.2f→%.2f: want unchanged", baseLum, lum, baseSpread, spread)
			}
		}},
		{name: "brighter", change: func(f *imageadjuster.Fields) { f.Brightness = 50 }, check: func(t *testing.T, lum, _ float64) {
			if lum < baseLum+30 {
				t.Errorf("luminance %.2f→%.2f: want much higher", baseLum, lum)
			}
		}},
		{name: "darker", change: func(f *imageadjuster.Fields) { f.Brightness = -50 }, check: func(t *testing.T, lum, _ float64) {
			if lum > baseLum-30 {
				t.Errorf("luminance %.2f→%.2f: want much lower", baseLum, lum)
			}
		}},
		{name: "gamma above 1 lightens", change: func(f *imageadjuster.Fields) { f.Gamma = 2 }, check: func(t *testing.T, lum, _ float64) {
			if lum <= baseLum+10 {
				t.Errorf("luminance %.2f→%.2f: want higher", baseLum, lum)
			}
		}},
		{name: "desaturated is grey", change: func(f *imageadjuster.Fields) { f.Saturation = -100 }, check: func(t *testing.T, _, spread float64) {
			if spread > 1 {
				t.Errorf("channel spread %.2f→%.2f: want grey", baseSpread, spread)
			}
		}},
		{name: "more saturated", change: func(f *imageadjuster.Fields) { f.Saturation = 100 }, check: func(t *testing.T, _, spread float64) {
			if spread <= baseSpread*1.3 {
				t.Errorf("channel spread %.2f→%.2f: want larger", baseSpread, spread)
			}
		}},
		{name: "less contrast", change: func(f *imageadjuster.Fields) { f.Contrast = -100 }, check: func(t *testing.T, lum, spread float64) {
			// -100 % contrast is uniform mid-grey.
			if spread > 1 || lum < 125 || lum > 130 {
				t.Errorf("luminance %.2f, spread %.2f: want uniform mid-grey", lum, spread)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fields(srv.URL + "/sample.png?sig=x")
			tt.change(f)
			res, rt, err := process(t, loopbackFetcher(), f)
			if err != nil {
				t.Fatal(err)
			}
			art := res.Artifacts[0]
			if !strings.HasSuffix(art.Key, "/adjusted.png") || art.ContentType != "image/png" {
				t.Errorf("artifact %+v", art)
			}
			if f.ResultImagePath == nil || *f.ResultImagePath != art.Key || rt.Saves() != 1 {
				t.Errorf("result_image_path %v after %d saves, want %s after 1", f.ResultImagePath, rt.Saves(), art.Key)
			}
			if err := rt.CheckProgress(); err != nil {
				t.Error(err)
			}
			if calls := rt.ProgressCalls(); len(calls) < 3 || calls[len(calls)-1].Percent != 100 {
				t.Errorf("progress %v", calls)
			}
			data, err := rt.ReadArtifact(context.Background(), art.Key)
			if err != nil {
				t.Fatal(err)
			}
			lum, spread, format, size := stats(t, data)
			if format != "png" || size != image.Pt(64, 48) {
				t.Errorf("result is a %v %s, want a 64x48 png", size, format)
			}
			tt.check(t, lum, spread)
		})
	}
}

func TestJPEGOutputFromArtifact(t *testing.T) {
	t.Parallel()
	f := &imageadjuster.Fields{Brightness: 10, Gamma: 1, OutputFormat: "jpeg"}
	job, rt := fakeruntime.NewJob(t, imageadjuster.Name, "", f)
	// The input is an artifact of an earlier task, read from the store
	// without HTTP.
	in, err := rt.Store.Put(context.Background(), artifact.TaskKey("a1b2c3", "image.png"), "image/png", sample(t))
	if err != nil {
		t.Fatal(err)
	}
	f.ImageURL = artifact.PathPrefix + in.Key
	fetcher := &artifact.Fetcher{Store: rt.Store, Client: &http.Client{Transport: noHTTP{t}}}
	res, err := imageadjuster.Type(fetcher, nil).Processor.Process(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	art := res.Artifacts[0]
	if !strings.HasSuffix(art.Key, "/adjusted.jpg") || art.ContentType != "image/jpeg" {
		t.Errorf("artifact %+v", art)
	}
	data, err := rt.ReadArtifact(context.Background(), art.Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jpeg.DecodeConfig(bytes.NewReader(data)); err != nil {
		t.Errorf("result is not a JPEG: %v", err)
	}
	if out := res.Data.(imageadjuster.Output); out.Format != "jpeg" || out.Width != 64 || out.Height != 48 {
		t.Errorf("result data %+v", out)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	srv := server(t)
	tests := []struct {
		name          string
		path          string
		fetcher       *artifact.Fetcher
		provider      string
		inject        func(rt *fakeruntime.Runtime)
		wantPermanent bool
		wantErr       string
	}{
		{name: "over 50 megapixels", path: "/huge.png", wantPermanent: true, wantErr: "10000x6000 (60.0 megapixels); the limit is 50 megapixels"},
		{name: "not an image", path: "/text", wantPermanent: true, wantErr: "not a supported image"},
		{name: "truncated image", path: "/truncated.png", wantPermanent: true, wantErr: "decoding png image"},
		{name: "404", path: "/missing.png", wantPermanent: true, wantErr: "HTTP 404"},
		{name: "502 is retried", path: "/down.png", wantErr: "HTTP 502"},
		{name: "loopback refused by default", path: "/sample.png", fetcher: &artifact.Fetcher{}, wantPermanent: true,
			wantErr: "127.0.0.1 is a loopback address"},
		{name: "input over the byte limit", path: "/sample.png", wantPermanent: true, wantErr: "input too large",
			fetcher: &artifact.Fetcher{MaxBytes: 100, Client: loopbackFetcher().Client}},
		{name: "wrong provider", path: "/sample.png", provider: "fal", wantPermanent: true, wantErr: `executor "fal" is not configured`},
		{name: "artifact store down", path: "/sample.png", inject: func(rt *fakeruntime.Runtime) { rt.PutErr = errors.New("disk full") },
			wantErr: "storing image: disk full"},
		{name: "lost the task", path: "/sample.png", inject: func(rt *fakeruntime.Runtime) { rt.SaveErr = task.ErrStaleRun },
			wantErr: task.ErrStaleRun.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fetcher := tt.fetcher
			if fetcher == nil {
				fetcher = loopbackFetcher()
			}
			provider := tt.provider
			if provider == "" {
				provider = "local"
			}
			f := fields(srv.URL + tt.path)
			job, rt := fakeruntime.NewJob(t, imageadjuster.Name, provider, f)
			if tt.inject != nil {
				tt.inject(rt)
			}
			res, err := imageadjuster.Type(fetcher, nil).Processor.Process(context.Background(), job)
			if err == nil {
				t.Fatalf("no error, result %+v", res)
			}
			if task.IsPermanent(err) != tt.wantPermanent {
				t.Errorf("permanent = %v, want %v (%v)", task.IsPermanent(err), tt.wantPermanent, err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if f.ResultImagePath != nil && tt.inject == nil {
				t.Errorf("result_image_path set on failure: %s", *f.ResultImagePath)
			}
		})
	}
}

func TestCancelledWhileFetching(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	job, _ := fakeruntime.NewJob(t, imageadjuster.Name, "local", fields(srv.URL+"/slow.png"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := imageadjuster.Type(loopbackFetcher(), nil).Processor.Process(ctx, job)
	if !errors.Is(err, context.DeadlineExceeded) || task.IsPermanent(err) {
		t.Errorf("got %v, want a retryable deadline error", err)
	}
}

type noHTTP struct{ t *testing.T }

func (n noHTTP) RoundTrip(r *http.Request) (*http.Response, error) {
	n.t.Errorf("unexpected HTTP request to %s", r.URL)
	return nil, errors.New("no HTTP in this test")
}
