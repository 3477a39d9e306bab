package videogeneration

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// Output is the result data of a video_generation task.
type Output struct {
	// Duration (seconds) and FPS are the clip's: measured by the local
	// executor, as requested for hosted models.
	Duration float64 `json:"duration"`
	FPS      int     `json:"fps"`
	// Width and Height are the clip's size when the executor knows it.
	Width  int `json:"width,omitempty"`
	Height int `json:"height,omitempty"`
	// Frames is the frame count when the executor knows it.
	Frames int `json:"frames,omitempty"`
	// Format is the container (mp4).
	Format string `json:"format"`
	// ContentType is the clip's media type.
	ContentType string `json:"content_type"`
}

// Processor runs video_generation tasks on the executor their
// provider_type names.
type Processor struct {
	fetcher   *artifact.Fetcher
	executors *executor.Set
}

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	// A task built in Go may name no executor: the type's default runs it.
	name := cmp.Or(job.Task.ProviderType, ProviderLocal)
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	ej, err := executor.FromJob(job, Operation)
	if err != nil {
		return nil, err
	}
	tenant := job.Task.OriginTenantID
	ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
		data, _, err := p.fetcher.Open(ctx, tenant, url)
		return data, err
	}
	ej.OpenInputStream = func(ctx context.Context, url string) (io.ReadCloser, int64, error) {
		return p.fetcher.OpenStream(ctx, tenant, url)
	}
	out, err := p.executors.Run(ctx, name, job.Task.ProviderRequested, ej, executor.ReporterFunc(job.Progress))
	if err != nil {
		return nil, err
	}
	clip, ok := video(out.Artifacts)
	if !ok {
		return nil, executor.Errorf(executor.ProviderError, "executor %s returned no video", name)
	}
	key := clip.Key
	f.ResultVideoPath = &key
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving the result path: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	res := Output{Duration: f.Duration, FPS: f.FPS, Format: "mp4", ContentType: clip.ContentType}
	if d, ok := out.Data["duration"].(float64); ok {
		res.Duration = d
	}
	res.Width, _ = out.Data["width"].(int)
	res.Height, _ = out.Data["height"].(int)
	res.Frames, _ = out.Data["frames"].(int)
	if f.Width != nil && res.Width == 0 {
		res.Width, res.Height = *f.Width, *f.Height
	}
	if !strings.Contains(clip.ContentType, "mp4") {
		res.Format = strings.TrimPrefix(clip.ContentType, "video/")
	}
	return &task.Result{Artifacts: out.Artifacts, Data: res}, nil
}

// video picks the clip among the outputs: the first video artifact (a
// hosted model may also return a poster image), else the first artifact.
func video(arts []task.Artifact) (task.Artifact, bool) {
	for _, a := range arts {
		if strings.HasPrefix(a.ContentType, "video/") {
			return a, true
		}
	}
	if len(arts) > 0 {
		return arts[0], true
	}
	return task.Artifact{}, false
}

// Resume implements registry.ResumerOf: the run re-attaches through the
// handle its lost run saved (a hosted prediction), or starts afresh when
// the job died with its process (a local render).
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
