// Package fakeruntime is a registry.Runtime for processor tests: it records
// progress reports, service task ids and saved fields, and stores artifacts
// in a real local artifact store under t.TempDir(). Errors can be injected
// to test a processor's failure paths.
package fakeruntime

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// ProgressCall is one recorded Progress report.
type ProgressCall struct {
	Percent float64
	Stage   string
}

// Runtime is a registry.Runtime that records what a processor does. Set
// the Err fields before the run to make the matching call fail.
type Runtime struct {
	// Store is the artifact store PutArtifact writes to.
	Store *artifact.Local
	// TaskID names the task artifacts are stored under.
	TaskID uuid.UUID

	// ProgressErr, SaveErr, ServiceErr and PutErr, when set, are returned
	// by Progress, SaveFields, SetServiceTaskID (and SetExecutorHandle)
	// and PutArtifact.
	ProgressErr, SaveErr, ServiceErr, PutErr error

	mu         sync.Mutex
	fields     any
	progress   []ProgressCall
	saved      [][]byte
	serviceIDs []string
	handles    []json.RawMessage
	errs       []task.Error
	artifacts  []task.Artifact
}

var _ registry.Runtime = (*Runtime)(nil)

// New returns a runtime for the task with id taskID whose fields are
// fields (a *M; SaveFields snapshots it as JSON).
func New(t testing.TB, taskID uuid.UUID, fields any) *Runtime {
	t.Helper()
	st, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatalf("fakeruntime: %v", err)
	}
	return &Runtime{Store: st, TaskID: taskID, fields: fields}
}

// NewJob returns a job for a new task of type taskType with provider
// provider and the given fields, and the runtime it reports to.
func NewJob[M any](t testing.TB, taskType, provider string, fields *M) (*registry.Job[M], *Runtime) {
	t.Helper()
	tk := &task.Task{
		ID:           uuid.New(),
		Type:         taskType,
		Status:       task.StatusExecuting,
		ProviderType: provider,
		QueueName:    "default",
		Attempt:      1,
		MaxAttempts:  3,
		CreatedAt:    task.Now(),
		UpdatedAt:    task.Now(),
		RunAt:        task.Now(),
		Errors:       []task.Error{},
	}
	rt := New(t, tk.ID, fields)
	return registry.NewJob(tk, fields, rt), rt
}

// Progress implements registry.Runtime.
func (r *Runtime) Progress(_ context.Context, percent float64, stage string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ProgressErr != nil {
		return r.ProgressErr
	}
	r.progress = append(r.progress, ProgressCall{Percent: percent, Stage: stage})
	return nil
}

// SaveFields implements registry.Runtime: it records a JSON snapshot of
// the fields.
func (r *Runtime) SaveFields(_ context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.SaveErr != nil {
		return r.SaveErr
	}
	b, err := json.Marshal(r.fields)
	if err != nil {
		return fmt.Errorf("fakeruntime: saving fields: %w", err)
	}
	r.saved = append(r.saved, b)
	return nil
}

// SetServiceTaskID implements registry.Runtime.
func (r *Runtime) SetServiceTaskID(_ context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ServiceErr != nil {
		return r.ServiceErr
	}
	r.serviceIDs = append(r.serviceIDs, id)
	return nil
}

// SetExecutorHandle implements registry.Runtime: it records the handle
// and, like the store, the external id as a service task id.
func (r *Runtime) SetExecutorHandle(_ context.Context, handle json.RawMessage, externalID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ServiceErr != nil {
		return r.ServiceErr
	}
	r.handles = append(r.handles, append(json.RawMessage(nil), handle...))
	r.serviceIDs = append(r.serviceIDs, externalID)
	return nil
}

// AddError implements registry.Runtime: it records e.
func (r *Runtime) AddError(_ context.Context, e task.Error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, e)
	return nil
}

// Errors returns the errors AddError recorded, in order.
func (r *Runtime) Errors() []task.Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]task.Error(nil), r.errs...)
}

// Handles returns the executor handles recorded, in order.
func (r *Runtime) Handles() []json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]json.RawMessage(nil), r.handles...)
}

// PutArtifact implements registry.Runtime: it stores the file under the
// task's key and returns a descriptor whose URL is the artifact's API
// path.
func (r *Runtime) PutArtifact(ctx context.Context, name, contentType string, data []byte) (task.Artifact, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.PutErr != nil {
		return task.Artifact{}, r.PutErr
	}
	a, err := r.Store.Put(ctx, artifact.TaskKey(r.TaskID.String(), name), contentType, data)
	if err != nil {
		return task.Artifact{}, err
	}
	a.URL = artifact.PathPrefix + a.Key
	r.artifacts = append(r.artifacts, a)
	return a, nil
}

// ProgressCalls returns the recorded progress reports.
func (r *Runtime) ProgressCalls() []ProgressCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ProgressCall(nil), r.progress...)
}

// CheckProgress reports an error unless every progress value is within
// 0–100 and none is lower than the one before.
func (r *Runtime) CheckProgress() error {
	last := 0.0
	for i, p := range r.ProgressCalls() {
		if p.Percent < 0 || p.Percent > 100 {
			return fmt.Errorf("progress call %d: %g is outside 0–100", i, p.Percent)
		}
		if p.Percent < last {
			return fmt.Errorf("progress call %d: %g after %g goes backwards", i, p.Percent, last)
		}
		last = p.Percent
	}
	return nil
}

// Saves returns how many times SaveFields succeeded.
func (r *Runtime) Saves() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.saved)
}

// SavedFields decodes the JSON snapshot of save number i (0-based) into
// into, so a test sees what was saved at that moment.
func (r *Runtime) SavedFields(i int, into any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i < 0 || i >= len(r.saved) {
		return fmt.Errorf("fakeruntime: no save number %d (%d saves)", i, len(r.saved))
	}
	return json.Unmarshal(r.saved[i], into)
}

// ServiceTaskIDs returns the recorded service task ids.
func (r *Runtime) ServiceTaskIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.serviceIDs...)
}

// Artifacts returns the descriptors PutArtifact returned.
func (r *Runtime) Artifacts() []task.Artifact {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]task.Artifact(nil), r.artifacts...)
}

// ReadArtifact returns the stored content of the artifact with key.
func (r *Runtime) ReadArtifact(ctx context.Context, key string) ([]byte, error) {
	rc, _, err := r.Store.Open(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
