// Package executor is the seam between task types and the services that do
// their work: a ComfyUI pool, a hosted model API, a local process, the
// built-in Go image operations, the mock. It is shaped like Nomad's task
// drivers: an executor starts a job, waits for it while reporting progress,
// cancels it, and recovers it after a restart from a handle that the run
// saved on the task row the moment the job was submitted. Optional abilities
// are separate interfaces (Pinger). Errors carry one taxonomy of categories
// (errors.go) that the engine records and retries by.
//
// A task type's processor builds a Job (FromJob does it from a
// registry.Job), looks up the task's executor in a Set, and calls Execute,
// which starts or recovers the job and waits for it.
package executor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/task"
)

// HandleVersion is the version of the Handle layout written today. An
// executor reading a handle of another version must refuse it as lost
// rather than guess.
const HandleVersion = 1

// Handle identifies a started job well enough to wait for it, cancel it or
// re-attach to it from another process. It is saved on the task row as JSON
// (tasks.executor_handle); its external id is also the task's
// service_task_id.
type Handle struct {
	// Executor is the configured executor name that started the job.
	Executor string `json:"executor"`
	// Server is the server the job runs on, for executors with several.
	Server string `json:"server,omitempty"`
	// ExternalID is the job's id in the service (a ComfyUI prompt id, a
	// prediction id, an in-process job id).
	ExternalID string `json:"external_id,omitempty"`
	// Version is the layout version of State (HandleVersion for the
	// fields above).
	Version int `json:"version"`
	// State is the executor's own recovery state, versioned by Version.
	State json.RawMessage `json:"state,omitempty"`
}

// ParseHandle decodes a saved handle; an empty one is (nil, nil).
func ParseHandle(raw json.RawMessage) (*Handle, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var h Handle
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("decoding executor handle: %w", err)
	}
	return &h, nil
}

// Job is one attempt of one task as an executor sees it.
type Job struct {
	// TaskID and Type identify the task; Attempt counts its claims.
	TaskID  uuid.UUID
	Type    string
	Attempt int
	// Operation names the work the task type asks for, e.g.
	// "text_to_image" or "adjust_image"; an executor refuses one it does
	// not know as invalid input.
	Operation string
	// Fields are the task's type fields as JSON (the derived seed
	// included); an executor decodes what it needs.
	Fields json.RawMessage
	// Saved is the handle a previous run of this task saved, handed to a
	// recovered run; nil for a fresh start.
	Saved *Handle
	// StartBy is when the job must have started (the task's created_at
	// plus its start_timeout_seconds); zero for no start deadline. A
	// service with a start deadline of its own (fal's
	// X-Fal-Request-Timeout) is handed the time left. The execution
	// timeout is the run context's deadline.
	StartBy time.Time
	// Tenant is the task's origin tenant, on whose behalf OpenInput reads
	// inputs; only jobs of one tenant share a batch (a batch reads every
	// member's inputs as one of them).
	Tenant string

	// OpenInput reads an input the fields name by URL (our artifacts or a
	// guarded HTTP fetch, on behalf of the task's tenant).
	OpenInput func(ctx context.Context, url string) ([]byte, error)
	// OpenInputStream, when set, opens an input as OpenInput does without
	// reading it whole: its body (the caller closes it) and its size, -1
	// when unknown. Executors that upload inputs to a provider's storage
	// stream them from it; others use OpenInput.
	OpenInputStream func(ctx context.Context, url string) (io.ReadCloser, int64, error)
	// PresignInput, when set, returns a short-lived URL through which
	// anyone can download an input the fields name, when it is one of
	// our artifacts in a store that can presign (S3); ok is false for
	// other inputs. Hosted executors hand such a URL to their service
	// instead of inlining or uploading the input.
	PresignInput func(ctx context.Context, url string) (signed string, ok bool, err error)
	// Put stores an output file among the task's artifacts.
	Put func(ctx context.Context, name, contentType string, data []byte) (task.Artifact, error)
	// AddError, when set, records a failure the job got past among the
	// task's errors (a server it failed over from); nil records nothing.
	AddError func(ctx context.Context, e task.Error) error
	// SaveHandle records h on the task row. Execute calls it when Start
	// returns; an executor whose service accepts a client-chosen id calls
	// it itself before submitting, so a crash in between cannot orphan
	// the job.
	SaveHandle func(ctx context.Context, h Handle) error

	// Batchable says the task type lets the job run in a batch with
	// compatible jobs (see Batcher), when its executor batches; false for
	// a job that must run alone (a generation task with an explicit seed).
	Batchable bool

	// admit, when set (Set.Run sets it), is asked before the job is
	// started afresh: an error refuses the start.
	admit func(ctx context.Context) error
	// batch, when set (Set.Run sets it for an executor that batches),
	// starts a fresh Batchable job as a member of a batch, admitting the
	// batch once, instead of admit and Start.
	batch func(ctx context.Context) (Handle, error)
}

// Reporter receives a job's progress (0–100) and stage. An error from it
// (the run lost its task) stops the wait.
type Reporter interface {
	Progress(ctx context.Context, percent float64, stage string) error
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context, percent float64, stage string) error

// Progress calls f.
func (f ReporterFunc) Progress(ctx context.Context, percent float64, stage string) error {
	return f(ctx, percent, stage)
}

// Output is what a finished job produced.
type Output struct {
	// Artifacts are the stored output files, in the executor's order.
	Artifacts []task.Artifact
	// Data is executor-specific result data (sizes, seeds, text).
	Data map[string]any
	// Usage is what the service reported spending on the job (its own
	// measure of service seconds, a model's tokens); zero when it reports
	// nothing. Execute adds it to the run's task.UsageMeter.
	Usage task.Usage
}

// Executor runs jobs in one configured service. Its methods are safe for
// concurrent use by many runs.
type Executor interface {
	// Name is the configured name (the key under `executors:`), which a
	// task's provider_type names.
	Name() string
	// Start submits the job and returns its handle as soon as the service
	// accepted it; it does not wait for the work.
	Start(ctx context.Context, job *Job) (Handle, error)
	// Wait follows the job until it ends, reporting progress, stores its
	// outputs through job.Put and returns them. When ctx ends, Wait
	// returns promptly; it does not cancel the job (Execute does).
	Wait(ctx context.Context, job *Job, h Handle, r Reporter) (*Output, error)
	// Cancel stops the job whether it is queued or running; cancelling a
	// job that already ended is not an error.
	Cancel(ctx context.Context, h Handle) error
	// Recover re-attaches to the job of a handle saved by another run,
	// maybe in another process, and returns the handle to wait on. A job
	// the service no longer knows is an error of category lost, after
	// which Execute starts the job afresh.
	Recover(ctx context.Context, job *Job, h Handle) (Handle, error)
}

// Pinger is implemented by executors that can tell whether their service
// answers (a health probe).
type Pinger interface {
	Ping(ctx context.Context) error
}
