package local

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/disintegration/imaging"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// OpImageToVideo renders a pan-and-zoom ("Ken Burns") clip of the image at
// the field image_url as an H.264 MP4 (VideoRequest), with an ffmpeg child
// process. The process is killed when the job's context ends.
const OpImageToVideo = "image_to_video"

// The camera motions of OpImageToVideo.
const (
	MotionZoomIn   = "zoom_in"
	MotionZoomOut  = "zoom_out"
	MotionPanLeft  = "pan_left"
	MotionPanRight = "pan_right"
	MotionPanUp    = "pan_up"
	MotionPanDown  = "pan_down"
)

// Motions are the camera motions OpImageToVideo draws.
var Motions = []string{MotionZoomIn, MotionZoomOut, MotionPanLeft, MotionPanRight, MotionPanUp, MotionPanDown}

// Limits of OpImageToVideo's request.
const (
	MaxVideoSeconds = 30
	MaxVideoFPS     = 60
	MinVideoSide    = 16
	MaxVideoSide    = 1920
	// DefaultVideoSide is the longest side of a clip whose request names
	// no size: the source's size, scaled down to fit.
	DefaultVideoSide = 1280
	// zoomRange is how far the camera zooms (1 → 1.25) or how much of the
	// image a pan crosses (a 1.2 zoom's margin).
	zoomRange = 0.25
	panZoom   = 1.2
)

// VideoRequest is what OpImageToVideo reads from the job's fields.
type VideoRequest struct {
	ImageURL string  `json:"image_url"`
	Duration float64 `json:"duration"`
	FPS      int     `json:"fps"`
	// Width and Height are the clip's size, even numbers; 0 takes the
	// source's aspect ratio with its longest side at most
	// DefaultVideoSide.
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Motion string `json:"motion"`
}

// Frames is the clip's frame count.
func (r VideoRequest) Frames() int { return max(1, int(r.Duration*float64(r.FPS)+0.5)) }

func decodeVideo(job *executor.Job) (VideoRequest, error) {
	var r VideoRequest
	if err := json.Unmarshal(job.Fields, &r); err != nil {
		return r, executor.Errorf(executor.InvalidInput, "local: reading fields: %w", err)
	}
	if r.Motion == "" {
		r.Motion = MotionZoomIn
	}
	invalid := func(format string, a ...any) (VideoRequest, error) {
		return r, executor.Errorf(executor.InvalidInput, "local: "+format, a...)
	}
	switch {
	case r.ImageURL == "":
		return invalid("image_url is required")
	case r.Duration <= 0 || r.Duration > MaxVideoSeconds:
		return invalid("duration must be above 0 and at most %d seconds, is %g", MaxVideoSeconds, r.Duration)
	case r.FPS < 1 || r.FPS > MaxVideoFPS:
		return invalid("fps must be 1 to %d, is %d", MaxVideoFPS, r.FPS)
	case (r.Width == 0) != (r.Height == 0):
		return invalid("give both width and height, or neither")
	case r.Width != 0 && (r.Width < MinVideoSide || r.Height < MinVideoSide || r.Width > MaxVideoSide || r.Height > MaxVideoSide):
		return invalid("width and height must be %d to %d, are %dx%d", MinVideoSide, MaxVideoSide, r.Width, r.Height)
	case r.Width%2 != 0 || r.Height%2 != 0:
		return invalid("width and height must be even (H.264 with 4:2:0 chroma), are %dx%d", r.Width, r.Height)
	}
	for _, m := range Motions {
		if r.Motion == m {
			return r, nil
		}
	}
	return invalid("motion %q is not one of %s", r.Motion, strings.Join(Motions, ", "))
}

// clipSize is the clip's size: the request's, else the source's scaled
// to fit DefaultVideoSide (never up), in even numbers.
func clipSize(r VideoRequest, src image.Point) (int, int) {
	if r.Width > 0 {
		return r.Width, r.Height
	}
	w, h := float64(src.X), float64(src.Y)
	if longest := max(w, h); longest > DefaultVideoSide {
		w, h = w*DefaultVideoSide/longest, h*DefaultVideoSide/longest
	}
	even := func(v float64) int { return max(MinVideoSide, int(v)/2*2) }
	return even(w), even(h)
}

// zoompan returns ffmpeg's zoompan expressions (zoom, x, y) for the
// motion over n frames; `on` is the output frame number.
func zoompan(motion string, n int) (z, x, y string) {
	t := "0"
	if n > 1 {
		t = fmt.Sprintf("on/%d", n-1) // 0 → 1 over the clip
	}
	center := func() (string, string) { return "iw/2-(iw/zoom/2)", "ih/2-(ih/zoom/2)" }
	pz := strconv.FormatFloat(panZoom, 'f', -1, 64)
	switch motion {
	case MotionZoomOut:
		z = fmt.Sprintf("%g-%g*%s", 1+zoomRange, zoomRange, t)
		x, y = center()
	case MotionPanLeft: // the camera moves left: the view starts at the right
		z, x, y = pz, fmt.Sprintf("(iw-iw/zoom)*(1-%s)", t), "ih/2-(ih/zoom/2)"
	case MotionPanRight:
		z, x, y = pz, fmt.Sprintf("(iw-iw/zoom)*%s", t), "ih/2-(ih/zoom/2)"
	case MotionPanUp:
		z, x, y = pz, "iw/2-(iw/zoom/2)", fmt.Sprintf("(ih-ih/zoom)*(1-%s)", t)
	case MotionPanDown:
		z, x, y = pz, "iw/2-(iw/zoom/2)", fmt.Sprintf("(ih-ih/zoom)*%s", t)
	default: // zoom_in
		z = fmt.Sprintf("1+%g*%s", zoomRange, t)
		x, y = center()
	}
	return z, x, y
}

// imageToVideo renders the clip: the image is decoded in Go (upright by
// its EXIF orientation), cropped to the clip's aspect ratio at twice its
// size (zoompan moves in whole pixels of its input: a larger input makes a
// smoother motion), and handed to ffmpeg, whose -progress output drives the
// job's progress from 10 to 95 %.
func (e *Executor) imageToVideo(ctx context.Context, job *executor.Job, f VideoRequest, r executor.Reporter) (*executor.Output, error) {
	bin, err := exec.LookPath(e.ffmpeg)
	if err != nil {
		// Another executor of the type may have it: fallbacks take over.
		return nil, executor.Errorf(executor.ProviderUnavailable,
			"local: ffmpeg (%s) is not installed on this worker: install it (Debian: apt-get install ffmpeg) or set the local executor's ffmpeg setting: %w", e.ffmpeg, err)
	}
	if err := r.Progress(ctx, 2, "fetching image"); err != nil {
		return nil, err
	}
	img, err := loadImage(ctx, job, f.ImageURL, func() error { return r.Progress(ctx, 5, "decoding") })
	if err != nil {
		return nil, err
	}
	w, h := clipSize(f, img.Bounds().Size())
	src := imaging.Fill(img, 2*w, 2*h, imaging.Center, imaging.Linear)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "compute-video-")
	if err != nil {
		return nil, fmt.Errorf("local: making a work directory: %w", err)
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "source.png"), filepath.Join(dir, "clip.mp4")
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, src); err != nil {
		return nil, fmt.Errorf("local: encoding the source frame: %w", err)
	}
	if err := os.WriteFile(in, buf.Bytes(), 0o600); err != nil {
		return nil, fmt.Errorf("local: writing the source frame: %w", err)
	}
	n := f.Frames()
	z, x, y := zoompan(f.Motion, n)
	filter := fmt.Sprintf("zoompan=z='%s':x='%s':y='%s':d=%d:s=%dx%d:fps=%d,format=yuv420p", z, x, y, n, w, h, f.FPS)
	args := []string{"-nostdin", "-hide_banner", "-loglevel", "error", "-nostats", "-progress", "pipe:1", "-y",
		"-i", in, "-vf", filter, "-frames:v", strconv.Itoa(n), "-r", strconv.Itoa(f.FPS),
		"-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-an", out}
	if err := r.Progress(ctx, 10, "rendering"); err != nil {
		return nil, err
	}
	if err := e.runFFmpeg(ctx, bin, args, n, r); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("local: reading the clip: %w", err)
	}
	if err := r.Progress(ctx, 96, "storing video"); err != nil {
		return nil, err
	}
	art, err := job.Put(ctx, "video.mp4", "video/mp4", data)
	if err != nil {
		return nil, fmt.Errorf("storing video: %w", err)
	}
	return &executor.Output{
		Artifacts: []task.Artifact{art},
		Data: map[string]any{"width": w, "height": h, "fps": f.FPS, "frames": n,
			"duration": float64(n) / float64(f.FPS), "format": "mp4", "motion": f.Motion},
	}, nil
}

// runFFmpeg runs ffmpeg in a process group of its own, reporting progress
// from its "frame=N" lines. When ctx ends the group is killed and ctx's
// error returned; a failed run is a provider error carrying ffmpeg's last
// error lines.
func (e *Executor) runFFmpeg(ctx context.Context, bin string, args []string, frames int, r executor.Reporter) error {
	// stop also kills ffmpeg when a progress report fails (the run lost
	// its task).
	run, stop := context.WithCancel(ctx)
	defer stop()
	cmd := exec.CommandContext(run, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &limitedWriter{w: &stderr, n: 8 << 10}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("local: ffmpeg's output: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return executor.Errorf(executor.ProviderUnavailable, "local: starting ffmpeg: %w", err)
	}
	var repErr error
	last := time.Time{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "frame=")
		if !ok || repErr != nil {
			continue
		}
		done, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || time.Since(last) < 250*time.Millisecond {
			continue
		}
		last = time.Now()
		repErr = r.Progress(ctx, 10+85*min(1, float64(done)/float64(frames)), fmt.Sprintf("rendering frame %d of %d", done, frames))
		if repErr != nil {
			stop()
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case repErr != nil:
		return repErr
	case err != nil:
		var ee *exec.ExitError
		msg := strings.TrimSpace(stderr.String())
		if errors.As(err, &ee) && msg != "" {
			return executor.Errorf(executor.ProviderError, "local: ffmpeg failed (%v): %s", ee, msg)
		}
		return executor.Errorf(executor.ProviderError, "local: ffmpeg failed: %w", err)
	}
	return nil
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		_, _ = l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}
