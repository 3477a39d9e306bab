package artifact_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/artifact"
)

// expirer is an in-memory artifact.Expirer: tasks by completion time, and
// the marks.
type expirer struct {
	mu       sync.Mutex
	finished map[uuid.UUID]time.Time
	expired  map[uuid.UUID]time.Time
}

func (x *expirer) ArtifactsToExpire(_ context.Context, before time.Time, limit int) ([]uuid.UUID, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var ids []uuid.UUID
	for id, at := range x.finished {
		if _, done := x.expired[id]; !done && at.Before(before) {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return x.finished[a].Compare(x.finished[b]) })
	return ids[:min(limit, len(ids))], nil
}

func (x *expirer) MarkArtifactsExpired(_ context.Context, ids []uuid.UUID, before, at time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, id := range ids {
		if x.finished[id].Before(before) {
			x.expired[id] = at
		}
	}
	return nil
}

// failingDeletes is a store whose DeleteTask fails for one task.
type failingDeletes struct {
	artifact.Store
	bad string
}

func (f failingDeletes) DeleteTask(ctx context.Context, taskID string) (int, error) {
	if taskID == f.bad {
		return 0, errors.New("bucket unreachable")
	}
	return f.Store.DeleteTask(ctx, taskID)
}

// TestRetentionPrune: a pass removes the artifacts of the tasks finished
// before the window, in batches, marks them, and stops at a task whose
// artifacts cannot be removed, which stays unmarked for the next pass.
func TestRetentionPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	local, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	x := &expirer{finished: map[uuid.UUID]time.Time{}, expired: map[uuid.UUID]time.Time{}}
	var old []uuid.UUID
	for i := range 5 {
		id := uuid.New()
		old = append(old, id)
		x.finished[id] = now.Add(-48*time.Hour + time.Duration(i)*time.Minute)
		if _, err := local.Put(ctx, artifact.TaskKey(id.String(), "a.png"), "", []byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	recent := uuid.New()
	x.finished[recent] = now.Add(-time.Hour)
	if _, err := local.Put(ctx, artifact.TaskKey(recent.String(), "a.png"), "", []byte("a")); err != nil {
		t.Fatal(err)
	}

	st := failingDeletes{Store: local, bad: old[3].String()}
	r, err := artifact.NewRetention(artifact.RetentionConfig{Keep: 24 * time.Hour, Batch: 2}, x, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, objs, err := r.Prune(ctx, now)
	if err == nil || n != 3 || objs != 3 {
		t.Fatalf("a pass with a failing delete: %d tasks, %d objects, %v; want 3, 3 and the error", n, objs, err)
	}
	if _, marked := x.expired[old[3]]; marked {
		t.Error("the task whose delete failed was marked")
	}
	st.bad = ""
	r, _ = artifact.NewRetention(artifact.RetentionConfig{Keep: 24 * time.Hour, Batch: 2}, x, st, nil)
	if n, objs, err := r.Prune(ctx, now); err != nil || n != 2 || objs != 2 {
		t.Fatalf("the next pass: %d tasks, %d objects, %v; want the 2 left", n, objs, err)
	}
	for _, id := range old {
		if objs, _ := local.ListTask(ctx, id.String()); len(objs) != 0 {
			t.Errorf("task %s keeps %v", id, objs)
		}
	}
	if objs, _ := local.ListTask(ctx, recent.String()); len(objs) != 1 {
		t.Errorf("the recent task's artifacts: %v", objs)
	}
	if _, err := artifact.NewRetention(artifact.RetentionConfig{}, x, st, nil); err == nil {
		t.Error("a retention that keeps nothing was accepted")
	}
}

// TestRetentionStartStop: Start runs passes in a goroutine that Stop ends
// (twice is harmless); a second Start is refused.
func TestRetentionStartStop(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	local, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	x := &expirer{finished: map[uuid.UUID]time.Time{}, expired: map[uuid.UUID]time.Time{}}
	r, err := artifact.NewRetention(artifact.RetentionConfig{Keep: time.Hour, Interval: time.Millisecond}, x, local, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err == nil {
		t.Error("a second Start was accepted")
	}
	time.Sleep(10 * time.Millisecond)
	r.Stop()
	r.Stop()
}
