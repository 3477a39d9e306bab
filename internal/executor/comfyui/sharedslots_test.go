package comfyui_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/comfyui"
	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestSharedSlotsAcrossProcesses: two executors over the same servers,
// each with its own store connection as two worker processes have, run
// eight jobs at once; no server ever holds more prompts than its one slot.
// (With LocalSlots each executor would count only its own prompts.)
func TestSharedSlotsAcrossProcesses(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			const jobs = 8
			reg := registry.New()
			reg.MustRegister(echo.Type())
			url := testdb.URL(t, dialect)
			stores := make([]*sqlstore.Store, 2)
			for i := range stores {
				st, err := sqlstore.Open(context.Background(), url, reg, testdb.Logger(t))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				if err := st.Migrate(context.Background()); err != nil {
					t.Fatal(err)
				}
				stores[i] = st
			}
			// The runs that hold the slots: tasks executing at attempt 1.
			ids := claimedEchoTasks(t, stores[0], reg, jobs)

			opts := comfyfake.Options{NodeDelay: 20 * time.Millisecond}
			a, b := comfyfake.StartT(t, opts), comfyfake.StartT(t, opts)
			exs := []*comfyui.Executor{
				newExecutor(t, fast(a.URL(), b.URL()), comfyui.Options{Slots: comfyui.NewSharedSlots(stores[0])}),
				newExecutor(t, fast(a.URL(), b.URL()), comfyui.Options{Slots: comfyui.NewSharedSlots(stores[1])}),
			}
			c := testCtx(t)
			var wg sync.WaitGroup
			errs := make(chan error, jobs)
			for i, id := range ids {
				wg.Go(func() {
					j, rec := newJob(t, map[string]any{"color": i})
					j.TaskID, j.Attempt = id, 1
					_, err := executor.Execute(c, exs[i%2], j, rec)
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			for _, f := range []*comfyfake.Server{a, b} {
				if st := f.Stats(); st.MaxQueued != 1 || len(st.Finished) == 0 {
					t.Errorf("server %s held up to %d prompts at once and finished %d; want 1 at most (one slot) and some",
						f.URL(), st.MaxQueued, len(st.Finished))
				}
			}
		})
	}
}

// claimedEchoTasks creates n echo tasks in st and claims them, so each is
// executing at attempt 1, and returns their ids.
func claimedEchoTasks(t *testing.T, st *sqlstore.Store, reg *registry.Registry, n int) []uuid.UUID {
	t.Helper()
	def, _ := reg.Lookup(echo.Name)
	ids := make([]uuid.UUID, n)
	for i := range ids {
		now := task.Now()
		tk := &task.Task{ID: uuid.Must(uuid.NewV7()), Type: echo.Name, Status: task.StatusPending, ProviderType: def.DefaultProvider,
			QueueName: def.DefaultQueue, CreatedAt: now, UpdatedAt: now, RunAt: now, MaxAttempts: 1, TimeoutSeconds: 60, Errors: []task.Error{}}
		if _, _, err := st.CreateTask(t.Context(), &store.Record{Task: tk, Fields: &echo.Fields{Message: "hi"}, Def: def}); err != nil {
			t.Fatal(err)
		}
		ids[i] = tk.ID
	}
	if recs, err := st.ClaimTasks(t.Context(), store.ClaimParams{Worker: "w", Limit: n, Lease: time.Minute}); err != nil || len(recs) != n {
		t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
	}
	return ids
}

// TestSharedSlotHeldByABatchMember: when the batch member a shared slot
// was taken under is left out of the batch (its task was cancelled before
// its handle was saved), the slot is held by a member in the batch, so it
// stays taken while the prompt is on the server: another run gets none.
func TestSharedSlotHeldByABatchMember(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(echo.Type())
			st, err := sqlstore.Open(context.Background(), testdb.URL(t, dialect), reg, testdb.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if err := st.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			ids := claimedEchoTasks(t, st, reg, 4) // three members, one other run
			fake := comfyfake.StartT(t, comfyfake.Options{})
			fake.Pause()
			t.Cleanup(fake.Resume)
			ex := newExecutor(t, fast(fake.URL()), comfyui.Options{Slots: comfyui.NewSharedSlots(st)})
			c := testCtx(t)

			jobs, _ := batchJobs(t, 3, 500)
			for i, j := range jobs {
				j.TaskID, j.Attempt = ids[i], 1
			}
			// Member 0's task is cancelled: its handle cannot be saved.
			if _, _, err := st.SetStatus(c, store.StatusChange{TaskID: ids[0], Scope: store.AdminScope, Change: task.Change{To: task.StatusCancelled}}); err != nil {
				t.Fatal(err)
			}
			jobs[0].SaveHandle = func(context.Context, executor.Handle) error { return errors.New("the task was cancelled") }
			hs, err := ex.StartBatch(c, jobs)
			var be *executor.BatchError
			if !errors.As(err, &be) || be.Errs[0] == nil || be.Errs[1] != nil || be.Errs[2] != nil {
				t.Fatalf("StartBatch: %v, want member 0 left out only", err)
			}
			t.Cleanup(func() {
				for _, h := range hs[1:] {
					_ = ex.Cancel(context.Background(), h)
				}
			})
			other := store.RunRef{TaskID: ids[3], Attempt: 1}
			got, err := st.TakeSlot(c, "comfy", []store.SlotServer{{URL: fake.URL(), Slots: 1}}, other)
			if err != nil || got != "" {
				t.Errorf("another run took the slot of the batch's prompt (%q, %v): it was held by the left-out member", got, err)
			}
		})
	}
}
