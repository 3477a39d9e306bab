package registry

import (
	"context"
	"encoding/json"
	"io/fs"
	"reflect"
	"time"

	"github.com/computeserver/compute/internal/task"
)

// Definition is the erased description of one task type: everything the
// engine, the store and the API need, with no Go type parameters.
type Definition struct {
	// Name is the stable type name used on the wire (`task_type`).
	Name string
	// Title is a short human name ("Image generation").
	Title string
	// Description is a sentence for the API documentation.
	Description string
	// Table is the type's own table; its `id` references tasks.id.
	Table string
	// Model is the struct type of the type's own fields (M).
	Model reflect.Type
	// Update is the struct type of the PATCH body's type fields (U).
	Update reflect.Type
	// Columns are the type table's columns, derived from Model.
	Columns []Column
	// UpdateFields maps each field of Update to the Model column it sets.
	UpdateFields []UpdateField

	// DefaultProvider is the provider_type given to tasks that name none.
	DefaultProvider string
	// Providers lists the provider_type values the type accepts.
	Providers []string
	// DefaultQueue is the queue_name given to tasks that name none.
	DefaultQueue string
	// MaxAttempts is the default number of attempts before a task fails.
	MaxAttempts int
	// Timeout is the default execution timeout of one attempt.
	Timeout time.Duration
	// AtMostOnce marks a type whose tasks must never run twice: a task
	// whose worker was lost while running it fails with category "lost"
	// instead of being re-queued.
	AtMostOnce bool
	// RouteAlias, when not empty, is the path segment under /api/v1 where
	// the type's tasks are also created, read and cancelled (see
	// Type.RouteAlias).
	RouteAlias string

	// Migrations holds the type's goose SQL files under one folder per
	// dialect ("sqlite", "postgres").
	Migrations fs.FS

	// Examples are the sample tasks the conformance suite runs.
	Examples []Example

	// Processor runs tasks of this type.
	Processor Processor
	// Scheduler, when not nil, adjusts scheduling fields at create.
	Scheduler Scheduler

	// newModel, defaults and validate are the typed hooks, erased.
	newModel func() any
	defaults func(any)
	validate func(any) error
}

// NewModel returns a pointer to a zero value of the type's fields struct.
func (d *Definition) NewModel() any { return d.newModel() }

// PrepareModel runs the fields struct's optional Defaulter and Validator.
// Defaults declared in `default` tags are applied by the API to absent JSON
// keys before decoding; code that builds fields in Go sets them itself.
func (d *Definition) PrepareModel(m any) error {
	d.defaults(m)
	return d.validate(m)
}

// Column is one typed column of a type table.
type Column struct {
	// Name is the SQL column name (the `db` tag).
	Name string
	// JSONName is the field's name on the wire (the `json` tag).
	JSONName string
	// Index locates the field in the Model struct.
	Index []int
	// Kind says how the value is stored.
	Kind Kind
	// Nullable is true for pointer fields: NULL in the database, null or
	// absent on the wire.
	Nullable bool
	// ReadOnly fields are outputs: not accepted on create or update.
	ReadOnly bool
	// Type is the Go type of the field.
	Type reflect.Type
}

// Kind is the storage class of a column.
type Kind int

// The storage classes a model field can have.
const (
	KindString Kind = iota + 1
	KindInt
	KindFloat
	KindBool
	KindTime
	// KindJSON stores slices, maps and structs as JSON text (jsonb on
	// PostgreSQL).
	KindJSON
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindBool:
		return "bool"
	case KindTime:
		return "time"
	case KindJSON:
		return "json"
	}
	return "unknown"
}

// UpdateField ties a PATCH field to the model column it replaces.
type UpdateField struct {
	Index  []int // in the Update struct (a pointer field)
	Column Column
}

// Processor runs one attempt of a task. It is the erased form of
// Processor[M].
type Processor interface {
	Process(ctx context.Context, run *Run) (*task.Result, error)
}

// Scheduler adjusts a new task's scheduling fields (queue_name, priority,
// run_at, provider_type) before it is stored. It is the erased form of
// Scheduler[M].
type Scheduler interface {
	Schedule(ctx context.Context, t *task.Task, fields any) error
}

// Run is one attempt of one task as the engine hands it to a processor.
type Run struct {
	// Task is a snapshot of the base row as claimed.
	Task *task.Task
	// Fields is a pointer to the type's fields struct (*M).
	Fields any
	// Env gives the processor the engine's services.
	Env Runtime
}

// Runtime is what the engine offers a running processor. Every write is
// conditional on the run still owning the task.
type Runtime interface {
	// Progress records progress (0–100) and an optional stage text; it also
	// renews the run's lease.
	Progress(ctx context.Context, percent float64, stage string) error
	// SaveFields writes the run's Fields back to the type table.
	SaveFields(ctx context.Context) error
	// SetServiceTaskID records the external job id (for resume).
	SetServiceTaskID(ctx context.Context, id string) error
	// SetExecutorHandle records the handle of the job the run's executor
	// started (JSON) and its external id, which also becomes the task's
	// service_task_id (for resume).
	SetExecutorHandle(ctx context.Context, handle json.RawMessage, externalID string) error
	// AddError appends e to the task's errors (a failure the run got
	// past, such as a server its executor failed over from).
	AddError(ctx context.Context, e task.Error) error
	// PutArtifact stores an output file of this task and returns its
	// descriptor with a download URL.
	PutArtifact(ctx context.Context, name, contentType string, data []byte) (task.Artifact, error)
}
