package sqlstore

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// baseColumns are the columns of `tasks` in the order scanTask reads them.
const baseColumns = `id, task_type, status, progress, stage, provider_type, queue_name, priority,
origin_instance, origin_zone, origin_tenant_id, created_at, updated_at, started_at, completed_at,
run_at, executor_type, executor_instance, service_task_id, errors, error_message, error_category,
retry_count, max_attempts, is_resumed, resume_attempt_count, last_resume_attempt, timeout_seconds,
start_timeout_seconds, webhook_url, webhook_events, result, attempt, lease_expires_at,
idempotency_key, request_hash, entity_id, executor_handle, provider_requested, trace_parent,
provider_seconds, input_tokens, output_tokens`

// eventColumns are the columns of `tasks` a task's events are made from
// (event.New), in the order scanEventTask reads them.
const eventColumns = `id, task_type, status, progress, stage, queue_name, origin_instance, origin_zone,
origin_tenant_id, started_at, completed_at, error_message, error_category, retry_count, attempt,
webhook_url, webhook_events, entity_id`

// scanEventTask reads a row of eventColumns into a task that has only
// those fields.
func scanEventTask(s rowScanner) (*task.Task, error) {
	var (
		t                  task.Task
		id, status, events string
		started, completed sql.NullTime
	)
	if err := s.Scan(&id, &t.Type, &status, &t.Progress, &t.Stage, &t.QueueName, &t.OriginInstance, &t.OriginZone,
		&t.OriginTenantID, &started, &completed, &t.ErrorMessage, &t.ErrorCategory, &t.RetryCount, &t.Attempt,
		&t.WebhookURL, &events, &t.EntityID); err != nil {
		return nil, err
	}
	var err error
	if t.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("task id %q: %w", id, err)
	}
	t.Status = task.Status(status)
	t.StartedAt, t.CompletedAt = timePtr(started), timePtr(completed)
	if events != "[]" {
		if err := json.Unmarshal([]byte(events), &t.WebhookEvents); err != nil {
			return nil, fmt.Errorf("task %s webhook_events: %w", id, err)
		}
	}
	return &t, nil
}

// prefixed returns baseColumns qualified with a table alias.
func prefixed(alias string) string { return qualified(baseColumns, alias) }

// qualified returns the column list cols qualified with a table alias.
func qualified(columns, alias string) string {
	cols := strings.Split(columns, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

type rowScanner interface{ Scan(dest ...any) error }

// scanTasks reads every row of baseColumns and closes rows.
func scanTasks(rows *sql.Rows) ([]*task.Task, error) {
	defer rows.Close()
	var out []*task.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// scanTask reads one row of baseColumns, followed by extra destinations.
func scanTask(s rowScanner, extra ...any) (*task.Task, error) {
	var (
		t                                     task.Task
		id, status, errs, events              string
		started, completed, lastResume, lease sql.NullTime
		result, idem, handle                  sql.NullString
	)
	dest := []any{&id, &t.Type, &status, &t.Progress, &t.Stage, &t.ProviderType, &t.QueueName, &t.Priority,
		&t.OriginInstance, &t.OriginZone, &t.OriginTenantID, &t.CreatedAt, &t.UpdatedAt, &started, &completed,
		&t.RunAt, &t.ExecutorType, &t.ExecutorInstance, &t.ServiceTaskID, &errs, &t.ErrorMessage, &t.ErrorCategory,
		&t.RetryCount, &t.MaxAttempts, &t.IsResumed, &t.ResumeAttemptCount, &lastResume, &t.TimeoutSeconds,
		&t.StartTimeoutSeconds, &t.WebhookURL, &events, &result, &t.Attempt, &lease,
		&idem, &t.RequestHash, &t.EntityID, &handle, &t.ProviderRequested, &t.TraceParent,
		&t.Usage.ProviderSeconds, &t.Usage.InputTokens, &t.Usage.OutputTokens}
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return nil, err
	}
	var err error
	if t.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("task id %q: %w", id, err)
	}
	t.Status = task.Status(status)
	t.CreatedAt, t.UpdatedAt, t.RunAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC(), t.RunAt.UTC()
	t.StartedAt, t.CompletedAt = timePtr(started), timePtr(completed)
	t.LastResumeAttempt, t.LeaseExpiresAt = timePtr(lastResume), timePtr(lease)
	if err := json.Unmarshal([]byte(errs), &t.Errors); err != nil {
		return nil, fmt.Errorf("task %s errors: %w", id, err)
	}
	if t.Errors == nil {
		t.Errors = []task.Error{}
	}
	if err := json.Unmarshal([]byte(events), &t.WebhookEvents); err != nil {
		return nil, fmt.Errorf("task %s webhook_events: %w", id, err)
	}
	if result.Valid {
		t.Result = json.RawMessage(result.String)
	}
	t.IdempotencyKey = idem.String
	if handle.Valid {
		t.ExecutorHandle = json.RawMessage(handle.String)
	}
	return &t, nil
}

// insertColumns are baseColumns plus the columns only the store reads.
const insertColumns = baseColumns + `, start_deadline`

// baseValues returns the values of insertColumns for an insert.
func baseValues(t *task.Task) ([]any, error) {
	errs, err := json.Marshal(nonNil(t.Errors))
	if err != nil {
		return nil, err
	}
	events, err := json.Marshal(nonNil(t.WebhookEvents))
	if err != nil {
		return nil, err
	}
	return []any{t.ID.String(), t.Type, string(t.Status), t.Progress, t.Stage, t.ProviderType, t.QueueName, t.Priority,
		t.OriginInstance, t.OriginZone, t.OriginTenantID, dbTime(t.CreatedAt), dbTime(t.UpdatedAt), nullTime(t.StartedAt), nullTime(t.CompletedAt),
		dbTime(t.RunAt), t.ExecutorType, t.ExecutorInstance, t.ServiceTaskID, string(errs), t.ErrorMessage, t.ErrorCategory,
		t.RetryCount, t.MaxAttempts, t.IsResumed, t.ResumeAttemptCount, nullTime(t.LastResumeAttempt), t.TimeoutSeconds,
		t.StartTimeoutSeconds, t.WebhookURL, string(events), nullJSON(t.Result), t.Attempt, nullTime(t.LeaseExpiresAt),
		nullString(t.IdempotencyKey), t.RequestHash, t.EntityID, nullJSON(t.ExecutorHandle), t.ProviderRequested, t.TraceParent,
		t.Usage.ProviderSeconds, t.Usage.InputTokens, t.Usage.OutputTokens, nullTime(startDeadline(t))}, nil
}

// startDeadline is when a task that has not started must fail, if ever.
func startDeadline(t *task.Task) *time.Time {
	if t.StartTimeoutSeconds <= 0 {
		return nil
	}
	d := t.CreatedAt.Add(time.Duration(t.StartTimeoutSeconds) * time.Second)
	return &d
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func timePtr(n sql.NullTime) *time.Time {
	if !n.Valid {
		return nil
	}
	t := n.Time.UTC()
	return &t
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return dbTime(*t)
}

// dbTime is the form every time is written in: UTC, truncated to the
// microsecond. PostgreSQL keeps microseconds and SQLite compares the text
// it stores, so a time in another zone or with nanoseconds would read back
// differently on the two databases and, on SQLite, sort and compare wrongly
// against times written in UTC.
func dbTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// TimeText is t as the store writes it in text (UTC, microseconds, the
// SQLite driver's format, which PostgreSQL reads too): generated DDL uses
// it for time defaults so they compare correctly with stored times.
func TimeText(t time.Time) string { return batchTime(t) }

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullJSON(r json.RawMessage) any {
	if len(r) == 0 {
		return nil
	}
	return string(r)
}

// columnValue converts a model field to a database value.
func columnValue(model any, c registry.Column) (any, error) {
	v := registry.Field(model, c)
	if c.Kind == registry.KindJSON {
		if (v.Kind() == reflect.Slice || v.Kind() == reflect.Map || v.Kind() == reflect.Pointer) && v.IsNil() {
			return nil, nil
		}
		b, err := json.Marshal(v.Interface())
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", c.Name, err)
		}
		return string(b), nil
	}
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil, nil
		}
		v = v.Elem()
	}
	switch c.Kind {
	case registry.KindString:
		return v.String(), nil
	case registry.KindInt:
		return v.Int(), nil
	case registry.KindFloat:
		return v.Float(), nil
	case registry.KindBool:
		return v.Bool(), nil
	case registry.KindTime:
		return dbTime(v.Interface().(time.Time)), nil
	}
	return nil, fmt.Errorf("column %s: unsupported kind %s", c.Name, c.Kind)
}

// columnDest returns a scan destination for a column.
func columnDest(c registry.Column) any {
	switch c.Kind {
	case registry.KindString, registry.KindJSON:
		return new(sql.NullString)
	case registry.KindInt:
		return new(sql.NullInt64)
	case registry.KindFloat:
		return new(sql.NullFloat64)
	case registry.KindBool:
		return new(sql.NullBool)
	case registry.KindTime:
		return new(sql.NullTime)
	}
	return new(any)
}

// setColumn stores a scanned destination into the model field.
func setColumn(model any, c registry.Column, dest any) error {
	f := registry.Field(model, c)
	var (
		val   reflect.Value
		valid bool
	)
	switch d := dest.(type) {
	case *sql.NullString:
		valid = d.Valid
		if c.Kind == registry.KindJSON {
			if !valid {
				return nil
			}
			if err := json.Unmarshal([]byte(d.String), f.Addr().Interface()); err != nil {
				return fmt.Errorf("column %s: %w", c.Name, err)
			}
			return nil
		}
		val = reflect.ValueOf(d.String)
	case *sql.NullInt64:
		valid, val = d.Valid, reflect.ValueOf(d.Int64)
	case *sql.NullFloat64:
		valid, val = d.Valid, reflect.ValueOf(d.Float64)
	case *sql.NullBool:
		valid, val = d.Valid, reflect.ValueOf(d.Bool)
	case *sql.NullTime:
		valid, val = d.Valid, reflect.ValueOf(d.Time.UTC())
	default:
		return fmt.Errorf("column %s: unexpected destination %T", c.Name, dest)
	}
	if !valid {
		f.Set(reflect.Zero(f.Type()))
		return nil
	}
	target := f
	if f.Kind() == reflect.Pointer {
		p := reflect.New(f.Type().Elem())
		f.Set(p)
		target = p.Elem()
	}
	target.Set(val.Convert(target.Type()))
	return nil
}
