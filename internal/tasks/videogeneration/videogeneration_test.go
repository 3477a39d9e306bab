package videogeneration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/videogeneration"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
)

func ptr[T any](v T) *T { return &v }

// source is a 96×64 picture with a bright square.
func source(t *testing.T) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 96, 64))
	for y := range 64 {
		for x := range 96 {
			c := color.NRGBA{uint8(2 * x), uint8(3 * y), 150, 255}
			if x > 40 && x < 56 && y > 24 && y < 40 {
				c = color.NRGBA{255, 255, 220, 255}
			}
			img.SetNRGBA(x, y, c)
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// fields returns valid fields for image_url.
func fields(url string) *videogeneration.Fields {
	f := &videogeneration.Fields{ImageURL: url}
	f.ApplyDefaults()
	return f
}

// job builds a job whose source is stored as an artifact of the runtime's
// store, and the processor's fetcher reading it (no HTTP but loopback).
func job(t *testing.T, provider string, f *videogeneration.Fields, input []byte) (*registry.Job[videogeneration.Fields], *fakeruntime.Runtime, *artifact.Fetcher) {
	t.Helper()
	j, rt := fakeruntime.NewJob(t, videogeneration.Name, provider, f)
	in, err := rt.Store.Put(context.Background(), artifact.TaskKey("a1b2c3", "source.png"), "image/png", input)
	if err != nil {
		t.Fatal(err)
	}
	if f.ImageURL == "" {
		f.ImageURL = artifact.PathPrefix + in.Key
	}
	fetcher := &artifact.Fetcher{Store: rt.Store, Client: netguard.NewHTTPClient(netguard.Policy{AllowPrivate: true}, 10*time.Second)}
	return j, rt, fetcher
}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(videogeneration.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(videogeneration.Name)
	if def == nil || def.Table != "video_generation_tasks" || def.DefaultProvider != "local" {
		t.Fatalf("definition %+v", def)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		change    func(f *videogeneration.Fields)
		wantField string
	}{
		{name: "valid", change: func(*videogeneration.Fields) {}},
		{name: "sized", change: func(f *videogeneration.Fields) { f.Width, f.Height = ptr(1920), ptr(1080) }},
		{name: "no url", change: func(f *videogeneration.Fields) { f.ImageURL = "" }, wantField: "image_url"},
		{name: "relative url", change: func(f *videogeneration.Fields) { f.ImageURL = "a.png" }, wantField: "image_url"},
		{name: "too short", change: func(f *videogeneration.Fields) { f.Duration = 0.2 }, wantField: "duration"},
		{name: "too long", change: func(f *videogeneration.Fields) { f.Duration = 31 }, wantField: "duration"},
		{name: "fps", change: func(f *videogeneration.Fields) { f.FPS = 61 }, wantField: "fps"},
		{name: "width alone", change: func(f *videogeneration.Fields) { f.Width = ptr(64) }, wantField: "height"},
		{name: "height alone", change: func(f *videogeneration.Fields) { f.Height = ptr(64) }, wantField: "width"},
		{name: "odd width", change: func(f *videogeneration.Fields) { f.Width, f.Height = ptr(65), ptr(64) }, wantField: "width"},
		{name: "huge", change: func(f *videogeneration.Fields) { f.Width, f.Height = ptr(64), ptr(4096) }, wantField: "height"},
		{name: "motion", change: func(f *videogeneration.Fields) { f.Motion = "spin" }, wantField: "motion"},
		{name: "prompt", change: func(f *videogeneration.Fields) { f.Prompt = ptr(strings.Repeat("a", 4001)) }, wantField: "prompt"},
		{name: "seed", change: func(f *videogeneration.Fields) { f.Seed = ptr(int64(-1)) }, wantField: "seed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fields("https://example.com/a.png")
			tt.change(f)
			err := f.Validate()
			var fe *registry.FieldError
			switch {
			case tt.wantField == "" && err != nil:
				t.Fatal(err)
			case tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField):
				t.Fatalf("got %v, want a FieldError for %s", err, tt.wantField)
			}
		})
	}
}

// probe is what ffprobe says of a clip: size, frame rate, decoded frame
// count and duration.
func probe(t *testing.T, data []byte) (w, h int, fps float64, frames int, duration float64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
		"stream=width,height,avg_frame_rate,nb_read_frames:format=duration", "-of", "default=noprint_wrappers=1", path).Output()
	if err != nil {
		t.Fatalf("ffprobe cannot decode the clip: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "width":
			w, _ = strconv.Atoi(v)
		case "height":
			h, _ = strconv.Atoi(v)
		case "avg_frame_rate":
			n, d, _ := strings.Cut(v, "/")
			a, _ := strconv.ParseFloat(n, 64)
			b, _ := strconv.ParseFloat(d, 64)
			fps = a / b
		case "nb_read_frames":
			frames, _ = strconv.Atoi(v)
		case "duration":
			duration, _ = strconv.ParseFloat(v, 64)
		}
	}
	return w, h, fps, frames, duration
}

// TestLocalClip runs the type on the default executors (the embedded
// server's): the local executor renders the clip with ffmpeg, and the
// stored MP4 decodes to the size, rate and length asked for.
func TestLocalClip(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install ffmpeg)", p)
		}
	}
	f := &videogeneration.Fields{Duration: 2, FPS: 12, Motion: "pan_right"}
	j, rt, fetcher := job(t, "", f, source(t))
	res, err := videogeneration.Type(fetcher, nil).Processor.Process(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	clip := res.Artifacts[0]
	if clip.ContentType != "video/mp4" || f.ResultVideoPath == nil || *f.ResultVideoPath != clip.Key {
		t.Fatalf("artifact %+v, result_video_path %v", clip, f.ResultVideoPath)
	}
	data, err := rt.ReadArtifact(context.Background(), clip.Key)
	if err != nil {
		t.Fatal(err)
	}
	w, h, fps, frames, dur := probe(t, data)
	// No size asked: the source's, 96×64.
	if w != 96 || h != 64 || math.Abs(fps-12) > 0.01 || frames != 24 || math.Abs(dur-2) > 0.1 {
		t.Errorf("clip %dx%d at %g fps, %d frames, %gs; want 96x64 at 12 fps, 24 frames, 2s", w, h, fps, frames, dur)
	}
	out := res.Data.(videogeneration.Output)
	if out.Width != 96 || out.Height != 64 || out.Frames != 24 || out.FPS != 12 || out.Duration != 2 || out.Format != "mp4" {
		t.Errorf("result data %+v", out)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
	if calls := rt.ProgressCalls(); len(calls) < 4 || calls[len(calls)-1].Percent != 100 {
		t.Errorf("progress %v", calls)
	}
}

// mp4 is the start of an MP4 file: enough for content sniffing.
var mp4 = []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom\x00\x00\x00\x08free")

// clipServer serves a clip the way a provider's CDN does.
func clipServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		w.Write(mp4)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func build(t *testing.T, name, kind string, settings map[string]any) *executor.Set {
	t.Helper()
	raw, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{name: {Type: kind, Settings: raw}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// TestFal runs the type on fal's queue (the fake): the task's fields are
// the model's input, the source image (an artifact fal cannot reach)
// inlined as a data URI, and the video of the result stored.
func TestFal(t *testing.T) {
	t.Parallel()
	cdn := clipServer(t)
	fake := falfake.NewServer(falfake.Config{Outcome: func(falfake.Submission) falfake.Outcome {
		return falfake.Outcome{Output: map[string]any{"video": map[string]any{"url": cdn.URL + "/clip.mp4", "content_type": "video/mp4"}}}
	}})
	t.Cleanup(fake.Close)
	set := build(t, "kling", "fal", map[string]any{"key": "k", "base_url": fake.URL, "model": "fal-ai/kling-video/v2/master/image-to-video",
		"poll_interval": "5ms", "poll_max": "20ms"})
	f := &videogeneration.Fields{Prompt: ptr("the model turns around"), Duration: 5, FPS: 24, Motion: "zoom_in", Seed: ptr(int64(7))}
	j, rt, fetcher := job(t, "kling", f, source(t))
	res, err := videogeneration.Type(fetcher, set).Processor.Process(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	subs := fake.Submissions()
	if len(subs) != 1 || subs[0].Model != "fal-ai/kling-video/v2/master/image-to-video" {
		t.Fatalf("submissions %+v", subs)
	}
	var in map[string]any
	if err := json.Unmarshal(subs[0].Input, &in); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(in["image_url"].(string), "data:image/png;base64,") || in["prompt"] != "the model turns around" ||
		in["duration"] != 5.0 || in["seed"] != 7.0 {
		t.Errorf("fal input %v", in)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0].ContentType != "video/mp4" || *f.ResultVideoPath != res.Artifacts[0].Key {
		t.Fatalf("artifacts %+v", res.Artifacts)
	}
	data, _ := rt.ReadArtifact(context.Background(), res.Artifacts[0].Key)
	if !bytes.Equal(data, mp4) {
		t.Error("the stored clip is not the provider's")
	}
	if out := res.Data.(videogeneration.Output); out.Duration != 5 || out.FPS != 24 || out.Format != "mp4" {
		t.Errorf("result data %+v", out)
	}
}

// TestReplicate runs the type on Replicate's predictions (the fake).
func TestReplicate(t *testing.T) {
	t.Parallel()
	cdn := clipServer(t)
	fake, err := replicatefake.NewServer(replicatefake.Config{Outcome: func(replicatefake.Create) replicatefake.Outcome {
		return replicatefake.Outcome{Output: cdn.URL + "/output.mp4"}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fake.Close)
	set := build(t, "rep", "replicate", map[string]any{"token": "t", "base_url": fake.URL, "model": "wan-video/wan-2.2-i2v-fast",
		"poll_interval": "5ms", "poll_max": "20ms"})
	f := &videogeneration.Fields{Prompt: ptr("a slow turn"), Duration: 5, FPS: 16, Motion: "zoom_in"}
	j, _, fetcher := job(t, "rep", f, source(t))
	res, err := videogeneration.Type(fetcher, set).Processor.Process(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Artifacts) != 1 || res.Artifacts[0].ContentType != "video/mp4" {
		t.Fatalf("artifacts %+v", res.Artifacts)
	}
	creates := fake.Creates()
	if len(creates) != 1 || !strings.Contains(string(creates[0].Body), `"fps":16`) {
		t.Errorf("creates %+v", creates)
	}
}

func TestFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		provider      string
		input         []byte
		wantPermanent bool
		wantErr       string
	}{
		{name: "not an image", input: []byte("plain text"), wantPermanent: true, wantErr: "not a supported image"},
		{name: "an executor that is not configured", provider: "fal", wantPermanent: true, wantErr: `executor "fal" is not configured`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			input := tt.input
			if input == nil {
				input = source(t)
			}
			f := &videogeneration.Fields{Duration: 1, FPS: 4, Motion: "zoom_in"}
			j, _, fetcher := job(t, tt.provider, f, input)
			_, err := videogeneration.Type(fetcher, nil).Processor.Process(context.Background(), j)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantPermanent && !task.IsPermanent(err) {
				t.Errorf("permanent = false (%v)", err)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if f.ResultVideoPath != nil {
				t.Errorf("result_video_path set on failure")
			}
		})
	}
}
