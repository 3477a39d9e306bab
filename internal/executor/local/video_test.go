package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/local"
	"github.com/computeserver/compute/internal/task"
)

// needFFmpeg skips a test on a machine without ffmpeg and ffprobe
// (.ci/run installs them).
func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, p := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install ffmpeg)", p)
		}
	}
}

// Probe is what ffprobe says of a video file.
type Probe struct {
	Codec         string
	Width, Height int
	FPS           float64
	Frames        int
	Duration      float64
}

// probe decodes a clip with ffprobe, counting its frames by decoding them.
func probe(t *testing.T, data []byte) Probe {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clip.mp4")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,avg_frame_rate,nb_read_frames:format=duration", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe cannot read the clip: %v", err)
	}
	var p struct {
		Streams []struct {
			Codec  string `json:"codec_name"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
			Rate   string `json:"avg_frame_rate"`
			Frames string `json:"nb_read_frames"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &p); err != nil || len(p.Streams) != 1 {
		t.Fatalf("ffprobe answered %s (%v)", out, err)
	}
	s := p.Streams[0]
	num, den, _ := strings.Cut(s.Rate, "/")
	n, _ := strconv.ParseFloat(num, 64)
	d, _ := strconv.ParseFloat(den, 64)
	frames, _ := strconv.Atoi(s.Frames)
	dur, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return Probe{Codec: s.Codec, Width: s.Width, Height: s.Height, FPS: n / d, Frames: frames, Duration: dur}
}

// videoJob is an image_to_video job reading input and storing its
// outputs in arts.
func videoJob(t *testing.T, req local.VideoRequest, input []byte, arts *sync.Map) *executor.Job {
	t.Helper()
	fields, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return &executor.Job{
		TaskID: uuid.New(), Type: "video_generation", Operation: local.OpImageToVideo, Fields: fields,
		OpenInput: func(context.Context, string) ([]byte, error) { return input, nil },
		Put: func(_ context.Context, name, ctype string, data []byte) (task.Artifact, error) {
			arts.Store(name, data)
			return task.Artifact{Key: "tasks/x/" + name, ContentType: ctype, Size: int64(len(data))}, nil
		},
		SaveHandle: func(context.Context, executor.Handle) error { return nil },
	}
}

// reporter records progress.
type reporter struct {
	mu   sync.Mutex
	pcts []float64
	err  error
}

func (r *reporter) Progress(_ context.Context, pct float64, _ string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pcts = append(r.pcts, pct)
	return r.err
}

func TestImageToVideo(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	cat, err := os.ReadFile("testdata/chelsea-226x150.jpg")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		req           local.VideoRequest
		width, height int
	}{
		// No size: the source's, made even.
		{local.VideoRequest{ImageURL: "x", Duration: 2, FPS: 12}, 226, 150},
		{local.VideoRequest{ImageURL: "x", Duration: 1.5, FPS: 24, Width: 128, Height: 128, Motion: local.MotionPanLeft}, 128, 128},
		{local.VideoRequest{ImageURL: "x", Duration: 1, FPS: 30, Width: 96, Height: 160, Motion: local.MotionZoomOut}, 96, 160},
		{local.VideoRequest{ImageURL: "x", Duration: 1, FPS: 10, Width: 64, Height: 48, Motion: local.MotionPanDown}, 64, 48},
	}
	for _, tt := range tests {
		t.Run(tt.req.Motion+strconv.Itoa(tt.req.FPS), func(t *testing.T) {
			t.Parallel()
			ex, err := local.New("local", local.Settings{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			var arts sync.Map
			rep := &reporter{}
			out, err := executor.Execute(t.Context(), ex, videoJob(t, tt.req, cat, &arts), rep)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Artifacts) != 1 || out.Artifacts[0].ContentType != "video/mp4" {
				t.Fatalf("artifacts %+v", out.Artifacts)
			}
			data, _ := arts.Load("video.mp4")
			p := probe(t, data.([]byte))
			frames := int(math.Round(tt.req.Duration * float64(tt.req.FPS)))
			if p.Codec != "h264" || p.Width != tt.width || p.Height != tt.height || p.Frames != frames ||
				math.Abs(p.FPS-float64(tt.req.FPS)) > 0.01 || math.Abs(p.Duration-tt.req.Duration) > 1.5/float64(tt.req.FPS) {
				t.Errorf("clip %+v, want h264 %dx%d, %d frames at %d fps, %gs", p, tt.width, tt.height, frames, tt.req.FPS, tt.req.Duration)
			}
			if out.Data["frames"] != frames || out.Data["width"] != tt.width {
				t.Errorf("data %v", out.Data)
			}
			if len(rep.pcts) < 3 || rep.pcts[len(rep.pcts)-1] < 90 {
				t.Errorf("progress %v", rep.pcts)
			}
		})
	}
}

func TestImageToVideoRefusals(t *testing.T) {
	t.Parallel()
	ex, err := local.New("local", local.Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []local.VideoRequest{
		{Duration: 1, FPS: 10},
		{ImageURL: "x", Duration: 0, FPS: 10},
		{ImageURL: "x", Duration: 31, FPS: 10},
		{ImageURL: "x", Duration: 1, FPS: 61},
		{ImageURL: "x", Duration: 1, FPS: 10, Width: 65, Height: 48},
		{ImageURL: "x", Duration: 1, FPS: 10, Width: 64},
		{ImageURL: "x", Duration: 1, FPS: 10, Motion: "spin"},
	} {
		var arts sync.Map
		if _, err := ex.Start(t.Context(), videoJob(t, req, nil, &arts)); !executor.Is(err, executor.InvalidInput) {
			t.Errorf("%+v: %v, want invalid_input", req, err)
		}
	}
}

// An input that is not an image fails as invalid input, before ffmpeg.
func TestImageToVideoNotAnImage(t *testing.T) {
	t.Parallel()
	ex, _ := local.New("local", local.Settings{}, nil)
	var arts sync.Map
	_, err := executor.Execute(t.Context(), ex, videoJob(t, local.VideoRequest{ImageURL: "x", Duration: 1, FPS: 10}, []byte("text"), &arts), &reporter{})
	if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "not a supported image") {
		t.Errorf("got %v", err)
	}
}

// Without ffmpeg the executor is unavailable for the job (a fallback may
// take over), with a message that says how to install it.
func TestImageToVideoWithoutFFmpeg(t *testing.T) {
	t.Parallel()
	ex, _ := local.New("local", local.Settings{FFmpeg: "/nonexistent/ffmpeg"}, nil)
	var arts sync.Map
	_, err := executor.Execute(t.Context(), ex, videoJob(t, local.VideoRequest{ImageURL: "x", Duration: 1, FPS: 10}, nil, &arts), &reporter{})
	if !executor.Is(err, executor.ProviderUnavailable) || !strings.Contains(err.Error(), "apt-get install ffmpeg") {
		t.Errorf("got %v", err)
	}
}

// A cancel kills ffmpeg: the run returns promptly and no ffmpeg child of
// this process is left. It does not run in parallel: the ffmpeg it sees
// must be its own.
func TestImageToVideoCancelKillsFFmpeg(t *testing.T) {
	needFFmpeg(t)
	cat, err := os.ReadFile("testdata/chelsea-226x150.jpg")
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := local.New("local", local.Settings{}, nil)
	var arts sync.Map
	// Thirty seconds of 1280×720 at 60 fps: minutes of work on this
	// machine.
	job := videoJob(t, local.VideoRequest{ImageURL: "x", Duration: 30, FPS: 60, Width: 1280, Height: 720}, cat, &arts)
	ctx, cancel := context.WithCancel(t.Context())
	rep := &reporter{}
	done := make(chan error, 1)
	go func() {
		_, err := executor.Execute(ctx, ex, job, rep)
		done <- err
	}()
	deadline := time.Now().Add(60 * time.Second)
	for len(ffmpegChildren(t)) == 0 {
		select {
		case err := <-done:
			t.Fatalf("the job ended before ffmpeg was seen running: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("ffmpeg never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the run did not return after the cancel")
	}
	if left := ffmpegChildren(t); len(left) > 0 {
		t.Errorf("ffmpeg processes left after the cancel: %v", left)
	}
}

// ffmpegChildren lists the pids of this process's ffmpeg children.
func ffmpegChildren(t *testing.T) []int {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []int
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid …
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		rest := strings.Fields(s[closing+1:])
		if s[open+1:closing] != "ffmpeg" || len(rest) < 2 || rest[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		out = append(out, pid)
	}
	return out
}
