package hosted

import (
	"context"
	"time"

	"github.com/computeserver/compute/internal/executor"
)

// Common are the settings every hosted executor has, embedded in its
// Settings.
type Common struct {
	// Input are fixed model inputs added to every request, over the
	// task's own fields (e.g. {output_format: png}).
	Input map[string]any `json:"input"`
	// InlineInputMaxBytes is the largest input, one the service cannot
	// fetch itself, handed over inline as a data URI (default 4 MiB).
	InlineInputMaxBytes int64 `json:"inline_input_max_bytes"`
	// UploadInputs says when such an input is uploaded to the service's
	// storage instead (fal storage, Replicate files): large (default, over
	// InlineInputMaxBytes), always, or never (larger inputs are refused).
	// An executor without an upload API (Cog) inlines only.
	UploadInputs string `json:"upload_inputs"`
	// UploadMaxBytes is the largest input uploaded (default 100 MiB).
	UploadMaxBytes int64 `json:"upload_max_bytes"`
}

// BuildInput builds the model input of job: its fields (Fields), shaped by
// shape when not nil, its inputs handed over inline (HandOverURLs without
// an Uploader), then the settings' fixed Input.
func (c Common) BuildInput(ctx context.Context, job *executor.Job, shape func(map[string]any)) (map[string]any, error) {
	return c.BuildInputUploading(ctx, job, shape, nil)
}

// BuildInputUploading is BuildInput with inputs the settings say to upload
// uploaded through up.
func (c Common) BuildInputUploading(ctx context.Context, job *executor.Job, shape func(map[string]any), up Uploader) (map[string]any, error) {
	in, err := Fields(job)
	if err != nil {
		return nil, err
	}
	if shape != nil {
		shape(in)
	}
	if err := c.HandOverURLs(ctx, job, in, up); err != nil {
		return nil, err
	}
	Merge(in, c.Input)
	return in, nil
}

// Polling are the settings of an executor that polls its jobs.
type Polling struct {
	// PollInterval is the first wait between two polls (default 500ms);
	// it grows by half up to PollMax (default 5s) while the job does not
	// move.
	PollInterval string `json:"poll_interval"`
	PollMax      string `json:"poll_max"`
}

// Backoff returns the polling backoff the settings describe.
func (p Polling) Backoff() (Backoff, error) {
	lo, err := ParseDuration("poll_interval", p.PollInterval, 500*time.Millisecond)
	if err != nil {
		return Backoff{}, err
	}
	hi, err := ParseDuration("poll_max", p.PollMax, 5*time.Second)
	if err != nil {
		return Backoff{}, err
	}
	return Backoff{Min: lo, Max: max(lo, hi)}, nil
}

// Models chooses a model per task type.
type Models struct {
	// Model is the model of every task type not in Models.
	Model string `json:"model"`
	// Models maps a task type to its model.
	Models map[string]string `json:"models"`
}

// For returns the model of task type typ, "" when none is configured.
func (m Models) For(typ string) string {
	if v, ok := m.Models[typ]; ok && v != "" {
		return v
	}
	return m.Model
}
