package queue_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/queue"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// progressEvent is a progress event's id, time, percentage and stage.
type progressEvent struct {
	id       int64
	at       time.Time
	progress float64
	stage    string
}

func (h *harness) progressDetails(id uuid.UUID) []progressEvent {
	h.t.Helper()
	var out []progressEvent
	for _, e := range h.events(id) {
		if !strings.HasSuffix(e.EventType, "_"+event.KindProgress) {
			continue
		}
		var b event.Body
		if err := json.Unmarshal(e.Body, &b); err != nil {
			h.t.Fatalf("event %d body %s: %v", e.ID, e.Body, err)
		}
		stage, _ := b.Metadata["stage"].(string)
		out = append(out, progressEvent{id: e.ID, at: b.Timestamp, progress: b.Progress, stage: stage})
	}
	return out
}

// testProgressLastReportEmitted reports 10% (an event at once), then 20%
// and 30% within the interval (throttled), then nothing while it waits:
// the 30% report still gets its event, one interval after the first.
func testProgressLastReportEmitted(t *testing.T, dialect string) {
	const interval = 300 * time.Millisecond
	var h *harness
	trailing := make(chan []progressEvent, 1)
	h = newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		for i, p := range []float64{10, 20, 30} {
			if err := job.Progress(ctx, p, []string{"first", "middle", "last"}[i]); err != nil {
				return nil, err
			}
		}
		// Wait, without reporting, until the trailing event is written.
		deadline := time.Now().Add(waitLimit)
		for time.Now().Before(deadline) {
			if evs := h.progressDetails(job.Task.ID); len(evs) >= 2 {
				trailing <- evs
				return &task.Result{}, nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		trailing <- nil
		return &task.Result{}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2, ProgressInterval: interval}, nil)
	id := h.createProbe(probeFields{}, nil)
	seen := wait(t, trailing, "the trailing progress event")
	h.waitStatus(id, task.StatusCompleted)
	evs := h.progressDetails(id)
	if seen == nil || len(evs) != 2 {
		t.Fatalf("progress events %+v, want two: 10%% at once and 30%% after the interval", evs)
	}
	if evs[0].progress != 10 || evs[0].stage != "first" || evs[1].progress != 30 || evs[1].stage != "last" {
		t.Errorf("progress events %+v, want 10%% (first) then 30%% (last)", evs)
	}
	gap := evs[1].at.Sub(evs[0].at)
	if gap < interval-20*time.Millisecond || gap > interval+2*time.Second {
		t.Errorf("the trailing event came %s after the first, want about %s", gap, interval)
	}
	trail := h.statusTrail(id)
	if !slices.Equal(trail, []task.Status{task.StatusPending, task.StatusExecuting, task.StatusCompleted}) {
		t.Errorf("status events %v", trail)
	}
	all := h.events(id)
	if last := all[len(all)-1]; last.Status != task.StatusCompleted || last.ID <= evs[1].id {
		t.Errorf("the completed event (%d) must come after the trailing progress event (%d)", last.ID, evs[1].id)
	}
}

// testProgressSupersededByOutcome reports 10% then 50% (throttled) and
// returns at once: the outcome's status event supersedes the 50% report,
// and no progress event is written after it.
func testProgressSupersededByOutcome(t *testing.T, dialect string) {
	const interval = 400 * time.Millisecond
	h := newHarness(t, dialect, opts{probe: func(ctx context.Context, job *registry.Job[probeFields]) (*task.Result, error) {
		for _, p := range []float64{10, 50} {
			if err := job.Progress(ctx, p, ""); err != nil {
				return nil, err
			}
		}
		return &task.Result{}, nil
	}})
	h.newEngine(queue.Config{Concurrency: 2, ProgressInterval: interval}, nil)
	id := h.createProbe(probeFields{}, nil)
	h.waitStatus(id, task.StatusCompleted)
	time.Sleep(interval + 300*time.Millisecond) // past when the trailing timer would have fired
	evs := h.progressDetails(id)
	if len(evs) != 1 || evs[0].progress != 10 {
		t.Errorf("progress events %+v, want only 10%%", evs)
	}
	all := h.events(id)
	if last := all[len(all)-1]; last.Status != task.StatusCompleted || last.Kind != event.KindStatus {
		t.Errorf("last event %s/%s, want the completed status event", last.EventType, last.Status)
	}
	if got := h.get(id).Task.Progress; got != 100 {
		t.Errorf("progress = %g, want 100", got)
	}
}
