package task

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Task is the common part of every task: the columns of the base table
// `tasks`. The fields of a task's own type live in that type's table and are
// carried beside a Task (see store.Record).
type Task struct {
	ID       uuid.UUID `json:"id"`
	Type     string    `json:"task_type"`
	Status   Status    `json:"status"`
	Progress float64   `json:"progress"`
	// Stage is the processor's free-text description of what it is doing.
	Stage string `json:"stage,omitempty"`

	ProviderType   string `json:"provider_type"`
	QueueName      string `json:"queue_name"`
	Priority       int    `json:"priority"`
	OriginInstance string `json:"origin_instance,omitempty"`
	OriginZone     string `json:"origin_zone,omitempty"`
	OriginTenantID string `json:"origin_tenant_id,omitempty"`

	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	RunAt       time.Time  `json:"run_at"`

	ExecutorType     string `json:"executor_type,omitempty"`
	ExecutorInstance string `json:"executor_instance,omitempty"`
	ServiceTaskID    string `json:"service_task_id,omitempty"`
	// EntityID is the caller's id of what the task is about (the original's
	// backend sends its generation's id), echoed as entity_id in every
	// event and webhook body; empty means the task's own id.
	EntityID string `json:"entity_id,omitempty"`
	// ExecutorHandle is the handle of the job the task's executor started
	// (package executor's Handle as JSON), saved the moment the job was
	// submitted so a recovered run re-attaches to it. It is internal
	// bookkeeping, not part of the public representation.
	ExecutorHandle json.RawMessage `json:"-"`
	// ProviderRequested records that the client named the executor
	// (provider_type) at create, so the type's fallbacks never take over.
	ProviderRequested bool `json:"-"`

	Errors        []Error `json:"errors"`
	ErrorMessage  string  `json:"error_message,omitempty"`
	ErrorCategory string  `json:"error_category,omitempty"`
	RetryCount    int     `json:"retry_count"`
	MaxAttempts   int     `json:"max_attempts"`

	IsResumed          bool       `json:"is_resumed"`
	ResumeAttemptCount int        `json:"resume_attempt_count"`
	LastResumeAttempt  *time.Time `json:"last_resume_attempt"`

	TimeoutSeconds      int `json:"timeout_seconds"`
	StartTimeoutSeconds int `json:"start_timeout_seconds,omitempty"`

	WebhookURL    string   `json:"webhook_url,omitempty"`
	WebhookEvents []string `json:"webhook_events,omitempty"`

	// Result is the processor's Result as stored; absent until the task
	// completes.
	Result json.RawMessage `json:"result,omitempty"`
	// Usage is what the services the task ran on reported spending,
	// summed over its runs.
	Usage Usage `json:"usage" doc:"What the services the task ran on reported spending (service seconds, tokens), summed over its runs; zeros when none reported anything."`

	// Attempt counts claims; every write a run makes is conditional on it,
	// so a worker that lost its claim cannot overwrite a newer run.
	Attempt int `json:"attempt"`
	// LeaseExpiresAt is when a claimed task is considered abandoned.
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	// IdempotencyKey is the client's Idempotency-Key, scoped to its API key
	// owner. It is not part of the public representation.
	IdempotencyKey string `json:"-"`
	// RequestHash identifies the create request that used IdempotencyKey.
	RequestHash string `json:"-"`
	// TraceParent is the W3C traceparent of the request that created the
	// task ('' when tracing is off); the run's span is its child.
	TraceParent string `json:"-"`
}

// Error is one entry of a task's error list: one per failed attempt.
type Error struct {
	Attempt  int       `json:"attempt"`
	Message  string    `json:"message"`
	Category string    `json:"category"`
	At       time.Time `json:"at"`
}

// Error categories recorded in error_category and in Error.Category.
const (
	CategoryProcessor    = "processor_error"
	CategoryPermanent    = "permanent"
	CategoryTimeout      = "timeout"
	CategoryStartTimeout = "start_timeout"
	CategoryCancelled    = "cancelled"
	CategoryLost         = "lost"
	CategoryInvalidInput = "invalid_input"
	// The categories of executor failures (package executor classifies
	// them; see docs/executors.md for which are retried).
	CategoryProviderUnavailable = "provider_unavailable"
	CategoryProviderError       = "provider_error"
	CategorySafetyBlocked       = "safety_blocked"
	CategoryRateLimited         = "rate_limited"
)

// Result is what a processor returns on success; it is stored as the task's
// `result` and served by GET /tasks/{id}/result.
type Result struct {
	// Artifacts are the files the task produced, with their download URLs.
	Artifacts []Artifact `json:"artifacts"`
	// Data is type-specific output (for example an LLM's text).
	Data any `json:"data,omitempty"`
	// Output is the result in the original clients' shape: the image
	// artifacts as output.images. The engine fills it on completion
	// (FillOutput).
	Output *Output `json:"output,omitempty" doc:"The result in the original clients' shape: output.images lists the image artifacts (url, seed, width, height)."`
}

// Output is a result in the original clients' shape.
type Output struct {
	Images []OutputImage `json:"images" doc:"The image artifacts, in the order of artifacts."`
}

// OutputImage is one image of Output.
type OutputImage struct {
	URL    string `json:"url" doc:"Where to download the image (the artifact's url)."`
	Seed   *int64 `json:"seed,omitempty" doc:"The seed that produced it, when known."`
	Width  int    `json:"width,omitempty" doc:"Width in pixels, when known."`
	Height int    `json:"height,omitempty" doc:"Height in pixels, when known."`
}

// FillOutput sets r.Output from r's image artifacts (content type
// image/*), unless the processor set it; a result without images gets
// none.
func (r *Result) FillOutput() {
	if r.Output != nil {
		return
	}
	var images []OutputImage
	for _, a := range r.Artifacts {
		if strings.HasPrefix(a.ContentType, "image/") {
			images = append(images, OutputImage{URL: a.URL, Seed: a.Seed, Width: a.Width, Height: a.Height})
		}
	}
	if len(images) > 0 {
		r.Output = &Output{Images: images}
	}
}

// Artifact describes one stored output file.
type Artifact struct {
	Key         string `json:"key" doc:"The artifact's key in the artifact store."`
	URL         string `json:"url" doc:"Where to download it."`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size" doc:"Bytes."`
	SHA256      string `json:"sha256,omitempty" doc:"Hex SHA-256 of the content."`
	// Width and Height are an image's size in pixels, when known.
	Width  int `json:"width,omitempty" doc:"An image's width in pixels, when known."`
	Height int `json:"height,omitempty" doc:"An image's height in pixels, when known."`
	// Seed is the random seed that produced a generated artifact.
	Seed *int64 `json:"seed,omitempty" doc:"The seed that produced a generated artifact, when known."`
}

// Now returns the current time truncated to microseconds in UTC, the
// precision both databases keep, so a value read back equals the one
// written.
func Now() time.Time { return precise(time.Now()) }

// precise returns t in UTC at Now's precision.
func precise(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
