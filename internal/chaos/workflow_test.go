package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/workflow"
)

// TestWorkflowChaosPostgres runs diamond workflows (a → b, c → d, each
// step an echo task, b's and d's messages filled from their dependencies'
// results) on real worker processes while one of them is killed with
// SIGKILL every 700 ms and restarted: the processes that complete a step's
// last dependency create the step's task in that transaction, so every
// workflow must complete with exactly one task per step, each task's
// outcome recorded once, and no task that is no step's.
func TestWorkflowChaosPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test: skipped with -short")
	}
	t.Parallel()
	const (
		workflows = 40
		kills     = 10
	)
	ctx := context.Background()
	url := testdb.URL(t, "postgres")
	reg, st := openStore(t, url)
	// The test's store starts the workflows: it creates their first
	// tasks; the workers do the rest.
	st.SetWorkflowHook(&workflow.Policy{Builder: &workflow.Builder{Registry: reg}})

	c := newCluster(t, computeBinary(t), map[string]string{
		"DATABASE_URL": url, "COMPUTE_DATA_DIR": t.TempDir(),
		"COMPUTE_LEASE": lease.String(), "COMPUTE_MAX_RESUMES": fmt.Sprint(maxResumes),
		"COMPUTE_WORKERS": "8", "COMPUTE_SHUTDOWN_GRACE": "1s", "COMPUTE_API_KEY": apiKey,
		"COMPUTE_LOG_LEVEL": "info", "COMPUTE_LOG_FORMAT": "json",
	})
	slots := []*proc{c.start("worker0"), c.start("worker1")}
	for _, p := range slots {
		p.waitReady(t, 30*time.Second)
	}
	echo := func(msg string, sleep int) json.RawMessage {
		raw, _ := json.Marshal(map[string]any{"task_type": "echo", "message": msg, "sleep_ms": sleep})
		return raw
	}
	ids := make([]uuid.UUID, 0, workflows)
	create := func() {
		i := len(ids)
		w, err := st.CreateWorkflow(ctx, &store.Workflow{ID: uuid.Must(uuid.NewV7()), Steps: []store.WorkflowStep{
			{ID: "a", Body: echo(fmt.Sprintf("w%d", i), 150)},
			{ID: "b", Body: echo("b after {{steps.a.data.message}}", 100), DependsOn: []string{"a"}},
			{ID: "c", Body: echo("c", 200), DependsOn: []string{"a"}},
			{ID: "d", Body: echo("{{steps.b.data.message}} and {{steps.c.data.message}}", 50), DependsOn: []string{"b", "c"}},
		}}, true)
		if err != nil {
			t.Fatalf("creating workflow %d: %v", i, err)
		}
		ids = append(ids, w.ID)
	}
	for range workflows / 2 {
		create()
	}
	for k := range kills {
		time.Sleep(700 * time.Millisecond)
		if k%2 == 0 && len(ids) < workflows {
			// More workflows while the workers are busy and dying.
			for range 4 {
				create()
			}
		}
		i := k % len(slots)
		slots[i].kill(t)
		slots[i] = c.start(fmt.Sprintf("worker%d", i))
	}
	for len(ids) < workflows {
		create()
	}

	deadline := time.Now().Add(90 * time.Second)
	for _, id := range ids {
		for {
			w, err := st.GetWorkflow(ctx, id, store.AdminScope)
			if err != nil {
				t.Fatal(err)
			}
			if w.Status != store.WorkflowRunning {
				break
			}
			if time.Now().After(deadline) {
				c.dumpLogs()
				t.Fatalf("workflow %s still running: %+v", id, w.Steps)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, p := range slots {
		p.checkAlive(t)
		p.waitReady(t, 10*time.Second)
		p.terminate(t, 10*time.Second)
	}

	stepTasks := map[uuid.UUID]bool{}
	for n, id := range ids {
		w, err := st.GetWorkflow(ctx, id, store.AdminScope)
		if err != nil {
			t.Fatal(err)
		}
		if w.Status != store.WorkflowCompleted {
			t.Errorf("workflow %s is %s (%s)", id, w.Status, w.Error)
			continue
		}
		for _, s := range w.Steps {
			if s.Task == nil || s.Task.Status != task.StatusCompleted {
				t.Errorf("workflow %s step %s: %+v", id, s.ID, s.Task)
				continue
			}
			stepTasks[s.Task.ID] = true
		}
		d := w.Steps[3].Task
		var res struct {
			Data struct{ Message string } `json:"data"`
		}
		if err := json.Unmarshal(d.Result, &res); err != nil || res.Data.Message != fmt.Sprintf("b after w%d and c", n) {
			t.Errorf("workflow %s: d said %q (%v)", id, res.Data.Message, err)
		}
	}
	all, err := st.ListTasks(ctx, store.ListFilter{Scope: store.AdminScope, Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Records) != 4*workflows || len(stepTasks) != 4*workflows {
		t.Errorf("%d tasks, %d of them steps' tasks; want %d, one per step", len(all.Records), len(stepTasks), 4*workflows)
	}
	rerun := 0
	for _, r := range all.Records {
		if r.Task.Attempt > 1 {
			rerun++ // its first run died with its worker
		}
		// A task's status events: created, each claim, the outcome; a
		// completed event more than once is an outcome recorded twice.
		evs, err := st.ListEvents(ctx, store.EventFilter{TaskID: r.Task.ID, Scope: store.AdminScope})
		if err != nil {
			t.Fatal(err)
		}
		done := 0
		for _, e := range evs {
			if e.Status == task.StatusCompleted {
				done++
			}
		}
		if done != 1 {
			t.Errorf("task %s has %d completed events", r.Task.ID, done)
		}
	}
	t.Logf("%d workflows, %d tasks (%d run more than once), %d SIGKILL, %d processes started", len(ids), len(all.Records), rerun, kills, c.started())
}
