package falfake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// run moves one request through IN_QUEUE → IN_PROGRESS → COMPLETED (§2.2,
// §2.6 "Configurable progression").
func (f *Fake) run(j *job) {
	defer f.wg.Done()
	var deadline <-chan time.Time
	if j.timeout > 0 {
		// §2.3 X-Fal-Request-Timeout: a time-to-start deadline.
		t := time.NewTimer(time.Until(j.sub.At.Add(j.timeout)))
		defer t.Stop()
		deadline = t.C
	}
	forced := false
	switch fakekit.Phase(f.cfg.QueueTime, j.advance, j.ctx.Done(), deadline) {
	case fakekit.Interrupted:
		return // cancelled while queued (already COMPLETED) or the fake closed
	case fakekit.Deadline:
		f.startTimedOut(j)
		return
	case fakekit.Advanced:
		forced = true
	}
	f.mu.Lock()
	j.ready = true
	if forced {
		f.startLocked(j)
	}
	f.scheduleLocked()
	f.mu.Unlock()
	f.changes.Notify()
	select {
	case <-j.started:
	case <-j.advance:
		f.mu.Lock()
		f.startLocked(j)
		f.mu.Unlock()
		f.changes.Notify()
	case <-j.ctx.Done():
		return
	case <-deadline:
		if f.startTimedOut(j) {
			return
		}
	}
	f.running(j)
}

// startTimedOut ends a request still IN_QUEUE when its start deadline
// passes: COMPLETED, its result a 504 with X-Fal-Request-Timeout-Type:
// user (§2.3, §2.6). It reports whether the request was still queued.
func (f *Fake) startTimedOut(j *job) bool {
	f.mu.Lock()
	queued := j.status == StatusInQueue
	if queued {
		f.completeLocked(j, Outcome{
			Status: http.StatusGatewayTimeout, Detail: "Request timed out before it could start", ErrorType: "request_timeout",
		}, nil)
		j.timedOut = true
		f.scheduleLocked()
	}
	f.mu.Unlock()
	f.changes.Notify()
	return queued
}

// startLocked moves a queued request to IN_PROGRESS.
func (f *Fake) startLocked(j *job) {
	if j.status != StatusInQueue {
		return
	}
	j.status = StatusInProgress
	j.startedAt = time.Now()
	close(j.started)
}

// scheduleLocked starts ready requests in submission order while a runner
// is free.
func (f *Fake) scheduleLocked() {
	running := 0
	for _, j := range f.order {
		if j.status == StatusInProgress {
			running++
		}
	}
	for _, j := range f.order {
		if f.cfg.Runners > 0 && running >= f.cfg.Runners {
			return
		}
		if j.ready && j.status == StatusInQueue {
			f.startLocked(j)
			running++
		}
	}
}

// running writes LogLines logs over RunTime, then completes the request
// with its outcome, or as cancelled when a cancel arrived (§2.2 Cancel).
func (f *Fake) running(j *job) {
	f.changes.Notify()
	steps := f.cfg.LogLines + 1
	step := f.cfg.RunTime
	if step > 0 {
		step /= time.Duration(steps)
	}
	for i := range steps {
		switch fakekit.Phase(step, j.advance, j.ctx.Done(), nil) {
		case fakekit.Interrupted:
			f.mu.Lock()
			if j.cancelRequested && j.status == StatusInProgress {
				f.completeLocked(j, cancelledOutcome(), nil)
				f.scheduleLocked()
			}
			f.mu.Unlock()
			f.changes.Notify()
			return
		}
		if i < f.cfg.LogLines {
			f.mu.Lock()
			j.logs = append(j.logs, Log{
				Message: fmt.Sprintf("step %d/%d", i+1, f.cfg.LogLines), Level: "INFO", Source: "USER",
				Timestamp: time.Now().UTC().Format(time.RFC3339Nano),
			})
			f.mu.Unlock()
			f.changes.Notify()
		}
	}
	out := f.cfg.Outcome(j.sub)
	var images []any
	switch {
	case out.Status != 0 || out.Output != nil:
	case j.sub.Model == TrainingModel:
		out.Output = f.trainingOutput(j)
	default:
		images = f.render(j)
	}
	f.mu.Lock()
	if j.status == StatusInProgress {
		f.completeLocked(j, out, images)
		f.scheduleLocked()
	}
	f.mu.Unlock()
	f.changes.Notify()
}

// completeLocked records the request's result. A success without an
// Output gets the default output of §2.5 around images.
func (f *Fake) completeLocked(j *job, out Outcome, images []any) {
	j.status = StatusCompleted
	j.completedAt = time.Now()
	if out.Status != 0 {
		body := map[string]any{"detail": out.Detail}
		if out.ErrorType != "" {
			body["error_type"] = out.ErrorType
		}
		j.code, j.errorType = out.Status, out.ErrorType
		j.body, _ = json.Marshal(body)
		if msg, ok := out.Detail.(string); ok {
			j.errMsg = msg
		} else {
			j.errMsg = fmt.Sprintf("Invalid status code: %d", out.Status) // §2.4 example
		}
		return
	}
	output := out.Output
	if output == nil {
		var in struct {
			Prompt string `json:"prompt"`
			Seed   *int64 `json:"seed"`
		}
		_ = json.Unmarshal(j.sub.Input, &in) // DefaultOutcome already vetted it
		seed := int64(j.seq) * 7919
		if in.Seed != nil {
			seed = *in.Seed
		}
		nsfw := make([]bool, len(images))
		output = map[string]any{
			"images": images, "seed": seed, "has_nsfw_concepts": nsfw, "prompt": in.Prompt,
			"timings": map[string]float64{"inference": j.completedAt.Sub(j.startedAt).Seconds()},
		}
	}
	j.code = http.StatusOK
	j.body, _ = json.Marshal(output)
}

// imageSizes are the named sizes of §2.5 image_size.
var imageSizes = map[string][2]int{
	"square_hd": {1024, 1024}, "square": {512, 512}, "portrait_4_3": {768, 1024},
	"portrait_16_9": {576, 1024}, "landscape_4_3": {1024, 768}, "landscape_16_9": {1024, 576},
}

// render makes the request's images (num_images of image_size, §2.5) as
// real PNGs served by the fake until the media TTL ends (§2.3).
func (f *Fake) render(j *job) []any {
	var in struct {
		ImageSize json.RawMessage `json:"image_size"`
		NumImages int             `json:"num_images"`
	}
	_ = json.Unmarshal(j.sub.Input, &in) // a bad field falls back to defaults
	size := imageSizes["landscape_4_3"]
	var named string
	var custom struct{ Width, Height int }
	if json.Unmarshal(in.ImageSize, &named) == nil {
		if s, ok := imageSizes[named]; ok {
			size = s
		}
	} else if json.Unmarshal(in.ImageSize, &custom) == nil && custom.Width > 0 && custom.Height > 0 {
		size = [2]int{custom.Width, custom.Height}
	}
	if longest := max(size[0], size[1]); longest > f.cfg.MaxSide {
		size = [2]int{max(1, size[0]*f.cfg.MaxSide/longest), max(1, size[1]*f.cfg.MaxSide/longest)}
	}
	n := min(max(in.NumImages, 1), 4)
	images := make([]any, n)
	for i := range n {
		data := fakekit.PNG(size[0], size[1], fmt.Sprintf("%s/%d/%s", j.sub.ID, i, j.sub.Input))
		path := f.files.Put(data, "image/png", ".png", j.mediaTTL)
		images[i] = map[string]any{
			"url": j.base + path, "width": size[0], "height": size[1], "content_type": "image/png",
			"file_name": fmt.Sprintf("image-%d.png", i), "file_size": len(data),
		}
	}
	return images
}
