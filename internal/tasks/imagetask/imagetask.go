// Package imagetask holds what the image task types that run on the local
// models share (background_remove, background_fix, face_enhancer,
// detail_enhancer, refine): reading and checking the input image, running
// an operation on the task's executor, and refusing at create to run them
// on the mock by accident. It declares no task type itself.
package imagetask

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // decoders for image.DecodeConfig and image.Decode
	_ "image/jpeg"
	_ "image/png"
	"io"

	_ "golang.org/x/image/webp"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// MaxPixels is the largest input image, in pixels (50 megapixels), checked
// from the header before anything decodes it.
const MaxPixels = 50_000_000

// MaxURLLength is the longest input URL accepted.
const MaxURLLength = 2048

// Executor types the image types can run on: the local models are
// command executors; hosted models are fal or replicate executors whose
// `models` setting maps the operation to a model; the mock renders a
// placeholder picture, and only when a task names it.
const (
	KindCommand   = "command"
	KindFal       = "fal"
	KindReplicate = "replicate"
	KindMock      = mock.Kind
)

// Input is a checked input image.
type Input struct {
	// Data is the file as read.
	Data []byte
	// Config is its header: format size and colour model.
	Config image.Config
	// Format is the decoder's name (png, jpeg, gif, webp).
	Format string
}

// Read reads the image at url on behalf of tenant and checks it is an
// image of a supported format within MaxPixels. A URL that cannot be read
// for good, or a file that is not such an image, is invalid_input (not
// retried); a failure that may pass is provider_unavailable.
func Read(ctx context.Context, fetcher *artifact.Fetcher, tenant, field, url string) (*Input, error) {
	data, _, err := fetcher.Open(ctx, tenant, url)
	if err != nil {
		return nil, classifyFetch(field, err)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "%s is not a supported image (png, jpeg, gif, webp): %v", field, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, executor.Errorf(executor.InvalidInput, "%s has an empty size %dx%d", field, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, executor.Errorf(executor.InvalidInput, "%s is %dx%d (%.1f megapixels); the limit is %d megapixels",
			field, cfg.Width, cfg.Height, float64(cfg.Width)*float64(cfg.Height)/1e6, MaxPixels/1_000_000)
	}
	return &Input{Data: data, Config: cfg, Format: format}, nil
}

// Decode decodes the image.
func (in *Input) Decode(field string) (image.Image, error) {
	img, _, err := image.Decode(bytes.NewReader(in.Data))
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "decoding %s: %v", field, err)
	}
	return img, nil
}

func classifyFetch(field string, err error) error {
	err = fmt.Errorf("reading %s: %w", field, err)
	var se *artifact.StatusError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.As(err, &se):
		if se.Temporary() {
			return executor.Classify(executor.ProviderUnavailable, err)
		}
		return executor.Classify(executor.InvalidInput, err)
	case errors.Is(err, netguard.ErrForbiddenDestination), errors.Is(err, artifact.ErrUnsupportedURL),
		errors.Is(err, artifact.ErrInvalidKey), errors.Is(err, artifact.ErrNotFound), errors.Is(err, artifact.ErrTooLarge):
		return executor.Classify(executor.InvalidInput, err)
	}
	return executor.Classify(executor.ProviderUnavailable, err)
}

// CheckURL checks an input URL field: required (unless optional and
// empty), at most MaxURLLength, an http(s) URL or an artifact path.
func CheckURL(field, url string, optional bool) error {
	switch {
	case url == "" && optional:
		return nil
	case url == "":
		return &registry.FieldError{Field: field, Message: "is required"}
	case len(url) > MaxURLLength:
		return &registry.FieldError{Field: field, Message: fmt.Sprintf("must be at most %d characters", MaxURLLength)}
	}
	if err := artifact.CheckInputURL(url); err != nil {
		return &registry.FieldError{Field: field, Message: err.Error()}
	}
	return nil
}

// Runner runs one operation of a task on the executor its provider_type
// names, reading inputs through the fetcher on the task's tenant's behalf.
type Runner struct {
	Executors *executor.Set
	Fetcher   *artifact.Fetcher
}

// Run runs operation for the job with fields (the executor's view of the
// task: usually job.Fields) and returns the executor's first artifact,
// its width and height filled from the result data when the executor did
// not set them. progress receives the executor's 0–100 %.
func Run[M any](ctx context.Context, r Runner, job *registry.Job[M], operation, defaultExecutor string, progress executor.Reporter) (task.Artifact, *executor.Output, error) {
	ej, err := executor.FromJob(job, operation)
	if err != nil {
		return task.Artifact{}, nil, err
	}
	tenant := job.Task.OriginTenantID
	ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
		data, _, err := r.Fetcher.Open(ctx, tenant, url)
		return data, err
	}
	ej.OpenInputStream = func(ctx context.Context, url string) (io.ReadCloser, int64, error) {
		return r.Fetcher.OpenStream(ctx, tenant, url)
	}
	name := job.Task.ProviderType
	if name == "" {
		name = defaultExecutor
	}
	out, err := r.Executors.Run(ctx, name, job.Task.ProviderRequested, ej, progress)
	if err != nil {
		return task.Artifact{}, nil, err
	}
	if len(out.Artifacts) == 0 {
		return task.Artifact{}, nil, executor.Errorf(executor.ProviderError, "executor %s returned no image", name)
	}
	art := out.Artifacts[0]
	if art.Width == 0 && art.Height == 0 {
		art.Width, art.Height = intOf(out.Data["width"]), intOf(out.Data["height"])
		out.Artifacts[0] = art
	}
	return art, out, nil
}

// intOf reads a JSON number of result data as an int (0 when it is none).
func intOf(v any) int {
	switch n := v.(type) {
	case float64:
		return int(n)
	case int:
		return n
	case int64:
		return int(n)
	}
	return 0
}

// Scaled returns a reporter that maps the executor's 0–100 % onto lo–hi
// of the task's progress.
func Scaled(report func(ctx context.Context, pct float64, stage string) error, lo, hi float64) executor.Reporter {
	return executor.ReporterFunc(func(ctx context.Context, pct float64, stage string) error {
		return report(ctx, lo+(hi-lo)*pct/100, stage)
	})
}

// RealOnly is the create-time check of a type whose default runs on the
// local models: a task that would land on the mock though nothing chose
// it (not the client, not the config file's route) — the mock being the
// only usable executor when the models are not installed and no hosted
// one is configured — is refused with a 422 that says how to enable a
// real one (executor.Set.StandIn, and `make models`). Naming provider_type
// "mock" asks for the placeholder.
type RealOnly[M any] struct {
	// Executors are the configured executors.
	Executors *executor.Set
	// Type is the task type's name; Default its default executor.
	Type, Default string
	// Kinds are the executor types the task type runs on.
	Kinds []string
	// Skip, when set, reports that a task needs no executor (it is
	// done in Go), so the check does not apply.
	Skip func(fields *M) bool
}

var _ registry.SchedulerOf[struct{}] = (*RealOnly[struct{}])(nil)

// Schedule implements registry.SchedulerOf.
func (s *RealOnly[M]) Schedule(_ context.Context, t *task.Task, fields *M) error {
	if s.Executors == nil || (s.Skip != nil && s.Skip(fields)) {
		return nil
	}
	err := s.Executors.StandIn(s.Type, s.Kinds, t.ProviderType, t.ProviderRequested)
	if err == nil {
		return nil
	}
	return &registry.FieldError{Field: "provider_type", Message: fmt.Sprintf(
		"%v; or run `make models` to install the local models, which the server then runs %s tasks on "+
			"(its built-in executor %s; docs/local-models.md); name provider_type \"mock\" for a placeholder image",
		err, s.Type, s.Default)}
}
