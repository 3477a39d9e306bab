package sqlstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestSlotsAreSharedAndFollowTheRun checks the shared slot accounting on
// both databases: one slot per server is given to one run at a time, the
// holder gets its own slot back, and a slot frees itself when its run
// releases it or its task stops executing at that attempt.
func TestSlotsAreSharedAndFollowTheRun(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, ids := newEchoStoreN(t, dialect, 3)
			recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 3, Lease: time.Minute})
			if err != nil || len(recs) != 3 {
				t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
			}
			a, b, c := store.RunRef{TaskID: ids[0], Attempt: 1}, store.RunRef{TaskID: ids[1], Attempt: 1}, store.RunRef{TaskID: ids[2], Attempt: 1}
			servers := []store.SlotServer{{URL: "http://gpu-1", Slots: 1}, {URL: "http://gpu-2", Slots: 1}}
			take := func(h store.RunRef) string {
				t.Helper()
				got, err := s.TakeSlot(ctx, "comfy", servers, h)
				if err != nil {
					t.Fatalf("TakeSlot: %v", err)
				}
				return got
			}
			first, second := take(a), take(b)
			if first != "http://gpu-1" || second != "http://gpu-2" {
				t.Fatalf("the two runs got %q and %q; want gpu-1 then gpu-2", first, second)
			}
			if got := take(c); got != "" {
				t.Fatalf("a third run got %q with every slot taken; want none", got)
			}
			if got := take(a); got != first {
				t.Errorf("the holder asking again got %q, want its own %q", got, first)
			}
			// Another executor's slots are its own.
			if got, err := s.TakeSlot(ctx, "other", servers, c); err != nil || got != "http://gpu-1" {
				t.Errorf("another executor's slot: %q, %v", got, err)
			}
			// A release frees the slot.
			if err := s.ReleaseSlot(ctx, "comfy", first, a); err != nil {
				t.Fatal(err)
			}
			if got := take(c); got != first {
				t.Fatalf("after the release the third run got %q, want %q", got, first)
			}
			// A run that ends frees its slot without a release.
			if errs, err := s.FinishRuns(ctx, []store.StatusChange{{TaskID: ids[1], Scope: store.AdminScope,
				Change: task.Change{To: task.StatusCompleted, Attempt: 1, Result: json.RawMessage(`{}`)}}}); err != nil || errs[0] != nil {
				t.Fatalf("FinishRuns: %v, %v", err, errs)
			}
			if got := take(a); got != second {
				t.Errorf("after b's run ended, a got %q, want %q", got, second)
			}
			// Fewer slots configured than rows: the extra rows are not given.
			if got, err := s.TakeSlot(ctx, "comfy", []store.SlotServer{{URL: "http://gpu-1", Slots: 0}}, b); err != nil || got != "" {
				t.Errorf("a server with no slots gave %q, %v", got, err)
			}
		})
	}
}

// TestSlotsUnderContention checks that runs taking slots at once, each on
// its own connection as worker processes do, never get more slots than a
// server has.
func TestSlotsUnderContention(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			const runs = 16
			s, ids := newEchoStoreN(t, dialect, runs)
			if recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: runs, Lease: time.Minute}); err != nil || len(recs) != runs {
				t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
			}
			servers := []store.SlotServer{{URL: "http://gpu-1", Slots: 2}, {URL: "http://gpu-2", Slots: 1}}
			got := make(chan string, runs)
			errs := make(chan error, runs)
			for _, id := range ids {
				go func() {
					srv, err := s.TakeSlot(ctx, "comfy", servers, store.RunRef{TaskID: id, Attempt: 1})
					got <- srv
					errs <- err
				}()
			}
			per := map[string]int{}
			for range runs {
				if err := <-errs; err != nil {
					t.Errorf("TakeSlot: %v", err)
				}
				if srv := <-got; srv != "" {
					per[srv]++
				}
			}
			if per["http://gpu-1"] != 2 || per["http://gpu-2"] != 1 || len(per) != 2 {
				t.Errorf("slots given: %v; want 2 on gpu-1 and 1 on gpu-2", per)
			}
		})
	}
}

// TestDrainedServerTakesNoNewJob checks on both databases that a drained
// executor server (store.HoldServer) gets no new slot while a run that
// holds one of its slots keeps it, and takes jobs again once resumed.
func TestDrainedServerTakesNoNewJob(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s, ids := newEchoStoreN(t, dialect, 3)
			if recs, err := s.ClaimTasks(ctx, store.ClaimParams{Worker: "w", Limit: 3, Lease: time.Minute}); err != nil || len(recs) != 3 {
				t.Fatalf("ClaimTasks: %v, %d records", err, len(recs))
			}
			a, b, c := store.RunRef{TaskID: ids[0], Attempt: 1}, store.RunRef{TaskID: ids[1], Attempt: 1}, store.RunRef{TaskID: ids[2], Attempt: 1}
			servers := []store.SlotServer{{URL: "http://gpu-1", Slots: 2}, {URL: "http://gpu-2", Slots: 1}}
			take := func(h store.RunRef) string {
				t.Helper()
				got, err := s.TakeSlot(ctx, "comfy", servers, h)
				if err != nil {
					t.Fatalf("TakeSlot: %v", err)
				}
				return got
			}
			if got := take(a); got != "http://gpu-1" {
				t.Fatalf("the first run got %q, want gpu-1 (the most free slots)", got)
			}
			if err := s.Hold(ctx, store.Hold{Kind: store.HoldServer, Name: "http://gpu-1", Reason: "maintenance"}); err != nil {
				t.Fatal(err)
			}
			if got := take(b); got != "http://gpu-2" {
				t.Fatalf("with gpu-1 drained a run got %q, want gpu-2 though gpu-1 has a free slot", got)
			}
			if got := take(c); got != "" {
				t.Fatalf("with gpu-1 drained and gpu-2 full a run got %q, want none", got)
			}
			if got := take(a); got != "http://gpu-1" {
				t.Errorf("the run holding a slot of the drained gpu-1 got %q, want its own", got)
			}
			if ok, err := s.Release(ctx, store.HoldServer, "http://gpu-1"); err != nil || !ok {
				t.Fatalf("Release: %v, %v", ok, err)
			}
			if got := take(c); got != "http://gpu-1" {
				t.Fatalf("after gpu-1 resumed a run got %q, want gpu-1", got)
			}
		})
	}
}
