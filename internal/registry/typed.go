package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"reflect"
	"slices"
	"time"

	"github.com/computeserver/compute/internal/task"
)

// ProcessorOf is what a task author implements: run one attempt of a task
// whose type fields are M. Return task.Permanent(err) for failures that must
// not be retried.
type ProcessorOf[M any] interface {
	Process(ctx context.Context, job *Job[M]) (*task.Result, error)
}

// ProcessorFunc adapts a function to ProcessorOf[M].
type ProcessorFunc[M any] func(ctx context.Context, job *Job[M]) (*task.Result, error)

// Process calls f.
func (f ProcessorFunc[M]) Process(ctx context.Context, job *Job[M]) (*task.Result, error) {
	return f(ctx, job)
}

// SchedulerOf optionally adjusts queue_name, priority, run_at or
// provider_type of a new task from its fields.
type SchedulerOf[M any] interface {
	Schedule(ctx context.Context, t *task.Task, fields *M) error
}

// Defaulter is implemented by a fields struct (on its pointer) that needs
// defaults computed in code, beyond `default` tags.
type Defaulter interface{ ApplyDefaults() }

// Validator is implemented by a fields struct (on its pointer) with rules
// that JSON Schema cannot express. Return a *FieldError to name the field.
type Validator interface{ Validate() error }

// FieldError is a validation failure of one field, reported as a 422 with
// the field named.
type FieldError struct {
	Field   string // the JSON name
	Message string
	// Value, when set, is the refused value, shown with the error.
	Value any
}

// Error implements error.
func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Job is one attempt of a task of type M, as its processor sees it.
type Job[M any] struct {
	// Task is the base row as claimed.
	Task *task.Task
	// Fields are the type's fields; change them and call SaveFields to
	// persist outputs such as a prompt id or a result path.
	Fields *M
	env    Runtime
}

// Progress records progress (0–100) with an optional stage text.
func (j *Job[M]) Progress(ctx context.Context, percent float64, stage string) error {
	return j.env.Progress(ctx, percent, stage)
}

// SaveFields writes Fields to the type table.
func (j *Job[M]) SaveFields(ctx context.Context) error { return j.env.SaveFields(ctx) }

// SetServiceTaskID records the id of the job in the external service.
func (j *Job[M]) SetServiceTaskID(ctx context.Context, id string) error {
	return j.env.SetServiceTaskID(ctx, id)
}

// SetExecutorHandle records the handle of the job the task's executor
// started, and its external id as service_task_id.
func (j *Job[M]) SetExecutorHandle(ctx context.Context, handle json.RawMessage, externalID string) error {
	if err := j.env.SetExecutorHandle(ctx, handle, externalID); err != nil {
		return err
	}
	j.Task.ExecutorHandle, j.Task.ServiceTaskID = handle, externalID
	return nil
}

// AddError records a failure the run got past among the task's errors.
func (j *Job[M]) AddError(ctx context.Context, e task.Error) error { return j.env.AddError(ctx, e) }

// PutArtifact stores an output file and returns its descriptor.
func (j *Job[M]) PutArtifact(ctx context.Context, name, contentType string, data []byte) (task.Artifact, error) {
	return j.env.PutArtifact(ctx, name, contentType, data)
}

// NewJob builds a Job for tests of a processor; engine code never calls it.
func NewJob[M any](t *task.Task, fields *M, env Runtime) *Job[M] {
	return &Job[M]{Task: t, Fields: fields, env: env}
}

// Type declares a task type whose own fields are M and whose PATCH body
// fields are U (use struct{} when nothing may be patched). Register it with
// Registry.Register.
type Type[M any, U any] struct {
	// Name is the stable wire name, e.g. "generation".
	Name string
	// Title is a short human name.
	Title string
	// Description is one sentence for the documentation.
	Description string
	// Processor runs the tasks.
	Processor ProcessorOf[M]
	// Scheduler is optional.
	Scheduler SchedulerOf[M]
	// Migrations holds "sqlite/*.sql" and "postgres/*.sql" goose files that
	// create and evolve the type table.
	Migrations fs.FS
	// DefaultProvider is the provider_type used when a task names none.
	DefaultProvider string
	// Providers lists the accepted provider_type values (DefaultProvider
	// is always accepted).
	Providers []string
	// DefaultQueue is the queue_name used when a task names none
	// (default "default").
	DefaultQueue string
	// MaxAttempts is the default attempts per task (default 3).
	MaxAttempts int
	// Timeout is the default execution timeout (default 10 minutes).
	Timeout time.Duration
	// AtMostOnce declares that a task must never run twice: when its
	// worker is lost mid-run it fails with category "lost" instead of
	// being re-queued (the default, under the task's resume budget).
	AtMostOnce bool
	// Table overrides the type table name (default Name + "_tasks").
	Table string
	// RouteAlias, when set, is a path segment under /api/v1 where the
	// type's tasks are also created, read and cancelled, as a former API
	// served them: POST /api/v1/{alias}/, GET /api/v1/{alias}/{task_id},
	// POST /api/v1/{alias}/{task_id}/cancel (the original's training
	// routes). Lower-case snake_case, not a reserved name.
	RouteAlias string
	// Examples are sample tasks the conformance suite runs through a real
	// server; declare at least one that completes and one that fails.
	Examples []Example
}

// Declare implements Declaration.
func (t Type[M, U]) Declare() (*Definition, error) {
	if err := ValidateName(t.Name); err != nil {
		return nil, err
	}
	fail := func(format string, a ...any) (*Definition, error) {
		return nil, fmt.Errorf("task type %q: %s", t.Name, fmt.Sprintf(format, a...))
	}
	if t.Processor == nil {
		return fail("no processor")
	}
	if t.Migrations == nil {
		return fail("no migrations")
	}
	for _, dialect := range []string{"sqlite", "postgres"} {
		m, err := fs.Glob(t.Migrations, dialect+"/*.sql")
		if err != nil || len(m) == 0 {
			return fail("no %s/*.sql migrations: add migrations/%s/<version>_%s.sql to the type's folder (`compute migrate diff --write` writes it)", dialect, dialect, t.Name)
		}
	}
	if t.RouteAlias != "" {
		if err := validateAlias(t.RouteAlias); err != nil {
			return fail("%v", err)
		}
	}
	if err := validateExamples(t.Name, t.Examples); err != nil {
		return fail("%v", err)
	}
	model := reflect.TypeFor[M]()
	cols, err := columnsOf(model)
	if err != nil {
		return fail("fields struct %s: %v", model, err)
	}
	upd := reflect.TypeFor[U]()
	updFields, err := updateFieldsOf(upd, cols)
	if err != nil {
		return fail("update struct %s: %v", upd, err)
	}
	def := &Definition{
		Name:            t.Name,
		Title:           t.Title,
		Description:     t.Description,
		Table:           t.Table,
		Model:           model,
		Update:          upd,
		Columns:         cols,
		UpdateFields:    updFields,
		DefaultProvider: t.DefaultProvider,
		DefaultQueue:    t.DefaultQueue,
		MaxAttempts:     t.MaxAttempts,
		Timeout:         t.Timeout,
		AtMostOnce:      t.AtMostOnce,
		RouteAlias:      t.RouteAlias,
		Migrations:      t.Migrations,
		Examples:        slices.Clone(t.Examples),
		Processor:       erasedProcessor[M]{t.Processor},
		newModel:        func() any { return new(M) },
		defaults: func(m any) {
			if d, ok := m.(Defaulter); ok {
				d.ApplyDefaults()
			}
		},
		validate: func(m any) error {
			if v, ok := m.(Validator); ok {
				return v.Validate()
			}
			return nil
		},
	}
	if t.Scheduler != nil {
		def.Scheduler = erasedScheduler[M]{t.Scheduler}
	}
	if def.Table == "" {
		def.Table = t.Name + "_tasks"
	}
	if def.DefaultProvider == "" {
		def.DefaultProvider = "local"
	}
	def.Providers = []string{def.DefaultProvider}
	for _, p := range t.Providers {
		if !slices.Contains(def.Providers, p) {
			def.Providers = append(def.Providers, p)
		}
	}
	if def.DefaultQueue == "" {
		def.DefaultQueue = "default"
	}
	if def.MaxAttempts <= 0 {
		def.MaxAttempts = 3
	}
	if def.Timeout <= 0 {
		def.Timeout = 10 * time.Minute
	}
	return def, nil
}

type erasedProcessor[M any] struct{ p ProcessorOf[M] }

func (e erasedProcessor[M]) Process(ctx context.Context, run *Run) (*task.Result, error) {
	job, err := e.job(run)
	if err != nil {
		return nil, err
	}
	return e.p.Process(ctx, job)
}

func (e erasedProcessor[M]) job(run *Run) (*Job[M], error) {
	fields, ok := run.Fields.(*M)
	if !ok {
		return nil, task.Permanent(fmt.Errorf("task %s: fields are %T, want %T", run.Task.ID, run.Fields, fields))
	}
	return &Job[M]{Task: run.Task, Fields: fields, env: run.Env}, nil
}

type erasedScheduler[M any] struct{ s SchedulerOf[M] }

func (e erasedScheduler[M]) Schedule(ctx context.Context, t *task.Task, fields any) error {
	m, ok := fields.(*M)
	if !ok {
		return fmt.Errorf("scheduler: fields are %T, want *%s", fields, reflect.TypeFor[M]())
	}
	return e.s.Schedule(ctx, t, m)
}

// Sub returns the subtree dir of fsys, for a type's embedded migrations
// folder (`//go:embed migrations` then registry.Sub(files, "migrations")).
// It panics if dir is not a valid path, which is a programming error.
func Sub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(fmt.Sprintf("registry.Sub(%q): %v", dir, err))
	}
	return sub
}
