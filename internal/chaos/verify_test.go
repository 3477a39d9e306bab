//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
)

// summary counts what the chaos did to the tasks.
type summary struct {
	// rescued counts tasks that needed more than one attempt; rescues
	// counts the lost attempts of all of them.
	rescued, rescues, maxAttempt int
	events                       int
	// refused counts the late writes of zombie runs the store refused;
	// leaseLost the runs a heartbeat stopped before they wrote.
	// refusedLive counts the refused writes that met a newer attempt
	// while it ran: without the attempt condition they would have landed.
	refused, refusedLive, leaseLost int
	// recoveredAtStart counts the tasks restarted workers recovered from
	// their predecessors (same instance identity) at start.
	recoveredAtStart int
	// errorLines counts the workers' error lines; deadlocks the lines,
	// of any level, that report a deadlock the database broke.
	errorLines, deadlocks int
}

// problems reports the first few problems as test errors and counts the
// rest, so a broken run does not print thousands of lines.
type problems struct {
	t *testing.T
	n int
}

const maxReported = 25

func (p *problems) add(format string, args ...any) {
	p.t.Helper()
	p.n++
	if p.n <= maxReported {
		p.t.Errorf(format, args...)
	}
}

func (p *problems) done() {
	p.t.Helper()
	if p.n > maxReported {
		p.t.Errorf("… and %d more problems", p.n-maxReported)
	}
}

// eventBody is the part of an event body the checks read.
type eventBody struct {
	Status   task.Status `json:"status"`
	Metadata struct {
		Attempt int `json:"attempt"`
	} `json:"metadata"`
}

// verify checks that every submitted task completed exactly once, by its
// last attempt, along a legal path of statuses, and that the workers' logs
// show no completion written by a superseded run.
func verify(t *testing.T, ctx context.Context, st store.Store, submitted map[uuid.UUID]string, logPaths []string) summary {
	t.Helper()
	var sum summary
	p := &problems{t: t}
	defer p.done()

	// None lost, none extra, all completed with their own message.
	tasks := listAll(t, ctx, st)
	if len(tasks) != len(submitted) {
		p.add("the store holds %d echo tasks, want %d", len(tasks), len(submitted))
	}
	failed := 0
	for id, msg := range submitted {
		rec, ok := tasks[id]
		if !ok {
			p.add("task %s is lost: not in the task list", id)
			continue
		}
		tk := rec.Task
		if tk.Status != task.StatusCompleted {
			failed++
			errs, _ := json.Marshal(tk.Errors)
			p.add("task %s is %s after %d attempts (retry_count %d of %d): %s %s; errors %s",
				id, tk.Status, tk.Attempt, tk.RetryCount, tk.MaxAttempts, tk.ErrorCategory, tk.ErrorMessage, errs)
			continue
		}
		var res struct {
			Data echo.Output `json:"data"`
		}
		if len(tk.Result) == 0 || string(tk.Result) == "null" {
			p.add("completed task %s has no result", id)
		} else if err := json.Unmarshal(tk.Result, &res); err != nil || res.Data.Message != msg {
			p.add("task %s result %s does not echo %q (%v)", id, tk.Result, msg, err)
		}
		got, err := st.GetTask(ctx, id, store.AdminScope)
		if err != nil {
			p.add("GetTask %s: %v", id, err)
		} else if f, ok := got.Fields.(*echo.Fields); !ok || f.Message != msg {
			p.add("task %s type row holds %#v, want message %q", id, got.Fields, msg)
		}
		// Every lost run is counted as a recovery, not an attempt, and
		// explained; nothing else fails an echo task without fail_with.
		if tk.RetryCount != 0 || tk.ResumeAttemptCount != len(tk.Errors) {
			p.add("task %s has retry_count %d, resume_attempt_count %d and %d errors; want 0 and one recovery per error",
				id, tk.RetryCount, tk.ResumeAttemptCount, len(tk.Errors))
		}
		for _, e := range tk.Errors {
			if e.Category != task.CategoryLost {
				p.add("task %s has an error of category %s: %s", id, e.Category, e.Message)
			}
		}
		if tk.Attempt > 1 || len(tk.Errors) > 0 {
			sum.rescued++
		}
		sum.rescues += tk.ResumeAttemptCount
		sum.maxAttempt = max(sum.maxAttempt, tk.Attempt)
	}
	for id := range tasks {
		if _, ok := submitted[id]; !ok {
			p.add("task %s was never submitted", id)
		}
	}
	if failed > 0 {
		t.Errorf("%d tasks did not complete; with %d recoveries each and at most one lost run per disruption, none should fail", failed, maxResumes)
	}

	// Exactly one completed event per task, last, written by the task's
	// final attempt, at the end of a legal path.
	byTask := map[uuid.UUID][]event.Event{}
	for _, e := range allEvents(t, ctx, st) {
		byTask[e.TaskID] = append(byTask[e.TaskID], e)
		sum.events++
	}
	for id := range submitted {
		rec := tasks[id]
		if rec == nil {
			continue
		}
		checkEvents(p, rec, byTask[id])
	}

	// The writers' side: a completion may be recorded only by the final
	// attempt, and a refused write must come from a superseded one.
	completions := map[string][]logLine{}
	var errorLines []string
	for _, l := range readLog(logPaths) {
		switch {
		case l.Msg == "task attempt recorded" && l.Outcome == "completed":
			completions[l.TaskID] = append(completions[l.TaskID], l)
		case strings.HasPrefix(l.Msg, "outcome not recorded"):
			sum.refused++
			id, _ := uuid.Parse(l.TaskID)
			if rec := tasks[id]; rec == nil || l.Attempt >= rec.Task.Attempt {
				p.add("%s: attempt %d of task %s was refused (%v), but it is the task's last attempt", l.File, l.Attempt, l.TaskID, l.Reason)
			}
			if newerRunning(byTask[id], l.Attempt, l.Time) {
				sum.refusedLive++
			}
		case l.Msg == "run stopped" && l.Reason == "lease lost":
			sum.leaseLost++
		case l.Msg == "recovered the tasks of this instance's previous run":
			sum.recoveredAtStart += l.Requeued + l.Resumed + l.Failed
		}
		if strings.Contains(fmt.Sprint(l.Error), "deadlock") {
			sum.deadlocks++
		}
		if l.Level == "ERROR" {
			sum.errorLines++
			errorLines = append(errorLines, fmt.Sprintf("%s: %s %v", l.File, l.Msg, l.Error))
		}
	}
	for raw, ls := range completions {
		id, _ := uuid.Parse(raw)
		rec := tasks[id]
		if rec == nil {
			p.add("a worker completed task %s, which is not in the store", raw)
			continue
		}
		if len(ls) > 1 {
			p.add("task %s: %d completions were recorded (%s attempt %d, %s attempt %d): a zombie write landed",
				raw, len(ls), ls[0].File, ls[0].Attempt, ls[1].File, ls[1].Attempt)
		}
		for _, l := range ls {
			if l.Attempt != rec.Task.Attempt {
				p.add("%s: attempt %d of task %s recorded its completion, but the task's last attempt is %d: a zombie write landed",
					l.File, l.Attempt, raw, rec.Task.Attempt)
			}
		}
	}
	if len(errorLines) > 0 {
		t.Logf("%d error lines in the worker logs, first: %s", len(errorLines), strings.Join(errorLines[:min(10, len(errorLines))], "\n"))
	}
	if sum.recoveredAtStart == 0 {
		t.Errorf("no restarted worker recovered its predecessor's tasks at start: every SIGKILLed worker's tasks waited for their leases")
	}
	if sum.rescued == 0 {
		t.Errorf("no task was rescued: no kill hit a running task, so the test proved nothing")
	}
	return sum
}

// checkEvents checks one task's events, oldest first. A run cannot finish
// before its sleep is over, so a completion sooner than that after the
// last claim was written by an earlier attempt: a zombie.
func checkEvents(p *problems, rec *store.Record, evs []event.Event) {
	p.t.Helper()
	tk := rec.Task
	var sleep time.Duration
	if f, ok := rec.Fields.(*echo.Fields); ok {
		sleep = time.Duration(f.SleepMS) * time.Millisecond
	}
	var claimed time.Time
	if len(evs) == 0 {
		p.add("task %s has no events", tk.ID)
		return
	}
	if evs[0].Status != task.StatusPending {
		p.add("task %s: first event is %s, want pending", tk.ID, evs[0].Status)
	}
	completed, executing := 0, 0
	path := make([]string, len(evs))
	for i, e := range evs {
		var b eventBody
		if err := json.Unmarshal(e.Body, &b); err != nil {
			p.add("task %s event %d: body: %v", tk.ID, e.ID, err)
			return
		}
		path[i] = fmt.Sprintf("%s@%d", e.Status, b.Metadata.Attempt)
		if want := echo.Name + "_" + event.KindStatus; e.EventType != want {
			p.add("task %s event %d has type %s, want %s", tk.ID, e.ID, e.EventType, want)
		}
		if b.Status != e.Status {
			p.add("task %s event %d: body status %s, row status %s", tk.ID, e.ID, b.Status, e.Status)
		}
		if i > 0 && !task.CanTransition(evs[i-1].Status, e.Status) {
			p.add("task %s: illegal transition %s → %s at event %d", tk.ID, evs[i-1].Status, e.Status, e.ID)
		}
		switch e.Status {
		case task.StatusExecuting:
			// Every claim increments the attempt and writes one event.
			executing++
			claimed = e.CreatedAt
			if b.Metadata.Attempt != executing {
				p.add("task %s: claim event %d has attempt %d, want %d", tk.ID, e.ID, b.Metadata.Attempt, executing)
			}
		case task.StatusCompleted:
			completed++
			if i != len(evs)-1 {
				p.add("task %s: event %d follows its completed event", tk.ID, evs[i+1].ID)
			}
			if b.Metadata.Attempt != tk.Attempt {
				p.add("task %s: completed by attempt %d, but its last attempt is %d", tk.ID, b.Metadata.Attempt, tk.Attempt)
			}
			if d := e.CreatedAt.Sub(claimed); d < sleep {
				p.add("task %s completed %s after its last claim (attempt %d), sooner than its %s sleep: an earlier attempt wrote it, a zombie write landed",
					tk.ID, d, b.Metadata.Attempt, sleep)
			}
		}
	}
	if completed != 1 {
		p.add("task %s has %d completed events, want 1: %s", tk.ID, completed, strings.Join(path, " "))
	}
	if executing != tk.Attempt {
		p.add("task %s has %d claim events but attempt %d: %s", tk.ID, executing, tk.Attempt, strings.Join(path, " "))
	}
}

// newerRunning reports whether, at time at, an attempt after attempt had
// been claimed and had not ended, going by the task's events.
func newerRunning(evs []event.Event, attempt int, at time.Time) bool {
	for i, e := range evs {
		if e.Status != task.StatusExecuting || i+1 == len(evs) {
			continue
		}
		var b eventBody
		if json.Unmarshal(e.Body, &b) != nil || b.Metadata.Attempt <= attempt {
			continue
		}
		if e.CreatedAt.Before(at) && evs[i+1].CreatedAt.After(at) {
			return true
		}
	}
	return false
}

// listAll returns every echo task, by id.
func listAll(t *testing.T, ctx context.Context, st store.Store) map[uuid.UUID]*store.Record {
	t.Helper()
	out := map[uuid.UUID]*store.Record{}
	f := store.ListFilter{Scope: store.AdminScope, TaskTypes: []string{echo.Name}, Limit: 500}
	for {
		page, err := st.ListTasks(ctx, f)
		if err != nil {
			t.Fatalf("listing tasks: %v", err)
		}
		for _, r := range page.Records {
			if _, dup := out[r.Task.ID]; dup {
				t.Errorf("task %s listed twice", r.Task.ID)
			}
			out[r.Task.ID] = r
		}
		if page.NextCursor == "" {
			return out
		}
		f.Cursor = page.NextCursor
	}
}

// allEvents returns every event, oldest first.
func allEvents(t *testing.T, ctx context.Context, st store.Store) []event.Event {
	t.Helper()
	var out []event.Event
	var after int64
	for {
		evs, err := st.ListEvents(ctx, store.EventFilter{Scope: store.AdminScope, AfterID: after, Limit: 1000})
		if err != nil {
			t.Fatalf("listing events: %v", err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		after = evs[len(evs)-1].ID
	}
}
