package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

const hookURL = "https://example.com/hook"

// createHooked creates an echo task with a webhook target; events, when not
// nil, is its filter.
func (e *env) createHooked(tenant string, events []string) *task.Task {
	e.t.Helper()
	return e.createEcho(func(t *task.Task) {
		t.WebhookURL, t.OriginTenantID = hookURL+"/"+t.ID.String()[:8], tenant
		if events != nil {
			t.WebhookEvents = events
		}
	}).Task
}

// deliveries lists a task's deliveries with admin scope.
func (e *env) deliveries(id uuid.UUID) []store.Delivery {
	e.t.Helper()
	ds, err := e.s.ListDeliveries(e.ctx, id, store.AdminScope)
	if err != nil {
		e.t.Fatalf("ListDeliveries(%s): %v", id, err)
	}
	return ds
}

// claimDeliveries claims with a one-minute lease.
func (e *env) claimDeliveries(limit int) []store.Delivery {
	e.t.Helper()
	ds, err := e.s.ClaimDeliveries(e.ctx, store.DeliveryClaim{Limit: limit, Lease: time.Minute})
	if err != nil {
		e.t.Fatalf("ClaimDeliveries(%d): %v", limit, err)
	}
	return ds
}

// record records an attempt that must apply.
func (e *env) record(d store.Delivery, code int, o store.DeliveryOutcome) {
	e.t.Helper()
	err := e.s.RecordDeliveryAttempt(e.ctx, store.DeliveryAttempt{
		DeliveryID: d.ID, Attempt: d.Attempts, StartedAt: task.Now(), Duration: 12500 * time.Microsecond,
		StatusCode: code, ResponseSnippet: fmt.Sprintf("answer %d", code),
	}, o)
	if err != nil {
		e.t.Fatalf("RecordDeliveryAttempt(%d, attempt %d): %v", d.ID, d.Attempts, err)
	}
}

func deliveryIDs(ds []store.Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func testWebhooks(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("rows follow the filter", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		all := e.createHooked("", nil)                                    // every status change, no progress
		some := e.createHooked("", []string{"completed", "progress"})     // completed and progress only
		none := e.createEcho(nil).Task                                    // no target
		failedOnly := e.createHooked("", []string{"failed", "cancelled"}) // never reached
		for _, tk := range []*task.Task{all, some, none} {
			c := e.claim(tk.ID, tk.QueueName)
			if _, err := e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: tk.ID, Attempt: c.Task.Attempt, Progress: 40, Lease: time.Minute, Emit: true}); err != nil {
				t.Fatal(err)
			}
			e.setStatus(store.StatusChange{TaskID: tk.ID, Change: task.Change{To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: resultJSON}})
		}
		want := map[uuid.UUID][]string{
			all.ID:        {"echo_status_update/pending", "echo_status_update/executing", "echo_status_update/completed"},
			some.ID:       {"echo_progress_update/executing", "echo_status_update/completed"},
			none.ID:       nil,
			failedOnly.ID: nil,
		}
		for id, kinds := range want {
			ds := e.deliveries(id)
			evs := map[int64]time.Time{}
			for _, ev := range e.events(id) {
				evs[ev.ID] = ev.CreatedAt
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.EventType+"/"+string(d.EventStatus))
				if d.TaskID != id || !strings.HasPrefix(d.URL, hookURL+"/") || d.Status != store.DeliveryPending ||
					d.Attempts != 0 || d.LastStatusCode != 0 || d.LastError != "" || d.DeliveredAt != nil || len(d.AttemptLog) != 0 {
					t.Errorf("new delivery = %+v", d)
				}
				at, ok := evs[d.EventID]
				if !ok {
					t.Errorf("delivery %d names event %d, not one of the task's", d.ID, d.EventID)
				}
				if !d.NextAttemptAt.Equal(at) || !d.CreatedAt.Equal(at) {
					t.Errorf("delivery %d: next_attempt_at %s, created_at %s; want the event's time %s", d.ID, d.NextAttemptAt, d.CreatedAt, at)
				}
			}
			if strings.Join(got, " ") != strings.Join(kinds, " ") {
				t.Errorf("task %s deliveries = %v, want %v", id, got, kinds)
			}
		}
	})

	t.Run("claim", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		var tasks []*task.Task
		for range 3 {
			tasks = append(tasks, e.createHooked("", []string{"pending"}))
		}
		first := e.claimDeliveries(2)
		rest := e.claimDeliveries(5)
		if len(first) != 2 || len(rest) != 1 {
			t.Fatalf("claims of 2 then 5 returned %v then %v, want 2 then 1", deliveryIDs(first), deliveryIDs(rest))
		}
		if again := e.claimDeliveries(5); len(again) != 0 {
			t.Errorf("claimed deliveries were claimed again within their lease: %v", deliveryIDs(again))
		}
		// Oldest due first: the tasks' creation order.
		for i, d := range append(first, rest...) {
			if d.TaskID != tasks[i].ID {
				t.Errorf("claim %d is task %s's delivery, want task %s's", i, d.TaskID, tasks[i].ID)
			}
			evs := e.events(d.TaskID)
			if len(evs) != 1 || d.EventID != evs[0].ID || !jsonEqual(d.Body, evs[0].Body) {
				t.Errorf("claimed delivery %d: event %d body %s; want event %v", d.ID, d.EventID, d.Body, evs)
			}
			if d.Attempts != 1 || d.Status != store.DeliveryPending || d.URL != tasks[i].WebhookURL || d.EventType != "echo_status_update" {
				t.Errorf("claimed delivery = %+v", d)
			}
			if !json.Valid(d.Body) {
				t.Errorf("claimed body is not JSON: %s", d.Body)
			}
			if lease := time.Until(d.NextAttemptAt); lease < 50*time.Second || lease > time.Minute {
				t.Errorf("claimed delivery is hidden for %s, want the one-minute lease", lease)
			}
		}
	})

	t.Run("an expired claim is due again", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.createHooked("", []string{"pending"})
		// The lease is long enough that the second claim comes within it
		// on a loaded machine too.
		const lease = time.Second
		first, err := e.s.ClaimDeliveries(e.ctx, store.DeliveryClaim{Limit: 5, Lease: lease})
		if err != nil || len(first) != 1 {
			t.Fatalf("claim = %v, %v", deliveryIDs(first), err)
		}
		if again := e.claimDeliveries(5); len(again) != 0 {
			t.Fatalf("claimed again within the lease: %v", deliveryIDs(again))
		}
		time.Sleep(lease + 100*time.Millisecond)
		second := e.claimDeliveries(5)
		if len(second) != 1 || second[0].ID != first[0].ID || second[0].Attempts != 2 {
			t.Fatalf("claim after the lease = %+v, want delivery %d at attempt 2", second, first[0].ID)
		}
		// The first claim's late write is refused but its attempt is
		// history; the second claim's write applies.
		e.record(second[0], 204, store.DeliveryOutcome{Status: store.DeliveryDelivered})
		err = e.s.RecordDeliveryAttempt(e.ctx, store.DeliveryAttempt{DeliveryID: first[0].ID, Attempt: 1, StartedAt: task.Now(), StatusCode: 500},
			store.DeliveryOutcome{Status: store.DeliveryPending, NextAttemptAt: task.Now()})
		if !errors.Is(err, store.ErrDeliveryClaimLost) {
			t.Errorf("late write of a lost claim: err = %v, want ErrDeliveryClaimLost", err)
		}
		d := e.deliveries(first[0].TaskID)[0]
		if d.Status != store.DeliveryDelivered || d.LastStatusCode != 204 || d.Attempts != 2 || d.DeliveredAt == nil {
			t.Errorf("the late write changed the delivery: %+v", d)
		}
		if len(d.AttemptLog) != 2 || d.AttemptLog[0].Attempt != 2 || d.AttemptLog[1].Attempt != 1 || d.AttemptLog[1].StatusCode != 500 {
			t.Errorf("attempt log = %+v, want attempt 2 then the late attempt 1", d.AttemptLog)
		}
		if again := e.claimDeliveries(5); len(again) != 0 {
			t.Errorf("a delivered delivery was claimed: %v", deliveryIDs(again))
		}
	})

	t.Run("concurrent claimers take each delivery once", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		const n = 24
		for range n {
			e.createHooked("", []string{"pending"})
		}
		var (
			mu   sync.Mutex
			seen = map[int64]int{}
			wg   sync.WaitGroup
			errs = make(chan error, 4)
		)
		for range 4 {
			wg.Go(func() {
				for {
					ds, err := e.s.ClaimDeliveries(e.ctx, store.DeliveryClaim{Limit: 3, Lease: time.Minute})
					if err != nil {
						errs <- err
						return
					}
					if len(ds) == 0 {
						return
					}
					mu.Lock()
					for _, d := range ds {
						seen[d.ID]++
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent claim: %v", err)
		}
		if len(seen) != n {
			t.Errorf("claimed %d distinct deliveries, want %d", len(seen), n)
		}
		for id, c := range seen {
			if c != 1 {
				t.Errorf("delivery %d claimed %d times", id, c)
			}
		}
	})

	t.Run("outcomes", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ts := map[store.DeliveryStatus]*task.Task{}
		for _, st := range []store.DeliveryStatus{store.DeliveryPending, store.DeliveryDelivered, store.DeliveryFailed, store.DeliveryStopped} {
			ts[st] = e.createHooked("", []string{"pending"})
		}
		ds := e.claimDeliveries(10)
		if len(ds) != 4 {
			t.Fatalf("claimed %d deliveries, want 4", len(ds))
		}
		byTask := map[uuid.UUID]store.Delivery{}
		for _, d := range ds {
			byTask[d.TaskID] = d
		}
		retryAt := task.Now().Add(time.Hour)
		codes := map[store.DeliveryStatus]int{store.DeliveryPending: 503, store.DeliveryDelivered: 200, store.DeliveryFailed: 0, store.DeliveryStopped: 410}
		before := task.Now()
		for st, tk := range ts {
			e.record(byTask[tk.ID], codes[st], store.DeliveryOutcome{Status: st, NextAttemptAt: retryAt})
		}
		after := task.Now()
		for st, tk := range ts {
			d := e.deliveries(tk.ID)[0]
			if d.Status != st || d.Attempts != 1 || d.LastStatusCode != codes[st] {
				t.Errorf("%s: delivery = %+v", st, d)
			}
			if (st == store.DeliveryDelivered) != (d.DeliveredAt != nil) {
				t.Errorf("%s: delivered_at = %v", st, d.DeliveredAt)
			}
			if st == store.DeliveryPending && !d.NextAttemptAt.Equal(retryAt) {
				t.Errorf("pending: next_attempt_at = %s, want %s", d.NextAttemptAt, retryAt)
			}
			within(t, string(st)+" updated_at", d.UpdatedAt, before, after)
			if len(d.AttemptLog) != 1 {
				t.Fatalf("%s: attempt log = %+v", st, d.AttemptLog)
			}
			a := d.AttemptLog[0]
			if a.DeliveryID != d.ID || a.Attempt != 1 || a.StatusCode != codes[st] || a.Duration != 12500*time.Microsecond ||
				a.ResponseSnippet != fmt.Sprintf("answer %d", codes[st]) || a.StartedAt.Location() != time.UTC || a.StartedAt.Before(before) {
				t.Errorf("%s: attempt = %+v", st, a)
			}
		}
		if again := e.claimDeliveries(10); len(again) != 0 {
			t.Errorf("claimed after the outcomes: %v; none is due", deliveryIDs(again))
		}
		if err := e.s.RecordDeliveryAttempt(e.ctx, store.DeliveryAttempt{DeliveryID: 1 << 40, Attempt: 1, StartedAt: task.Now()},
			store.DeliveryOutcome{Status: store.DeliveryDelivered}); !errors.Is(err, store.ErrDeliveryClaimLost) {
			t.Errorf("recording for an unknown delivery: err = %v, want ErrDeliveryClaimLost", err)
		}
		if err := e.s.RecordDeliveryAttempt(e.ctx, store.DeliveryAttempt{DeliveryID: ds[0].ID, Attempt: 1, StartedAt: task.Now()},
			store.DeliveryOutcome{Status: "lost"}); err == nil {
			t.Errorf("an unknown outcome status was accepted")
		}
	})

	t.Run("response snippets are stored as bounded valid text", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		tk := e.createHooked("", []string{"pending"})
		d := e.claimDeliveries(1)[0]
		raw := "nul\x00 bad\xff\xfe " + strings.Repeat("é", 2000)
		if err := e.s.RecordDeliveryAttempt(e.ctx, store.DeliveryAttempt{
			DeliveryID: d.ID, Attempt: d.Attempts, StartedAt: task.Now(), StatusCode: 500,
			ResponseSnippet: raw, Error: "err\x00or \xff",
		}, store.DeliveryOutcome{Status: store.DeliveryFailed}); err != nil {
			t.Fatal(err)
		}
		a := e.deliveries(tk.ID)[0].AttemptLog[0]
		if len(a.ResponseSnippet) > store.MaxSnippetBytes || len(a.ResponseSnippet) < store.MaxSnippetBytes-4 ||
			!utf8.ValidString(a.ResponseSnippet) || strings.ContainsRune(a.ResponseSnippet, 0) || !strings.HasPrefix(a.ResponseSnippet, "nul bad") {
			t.Errorf("snippet (%d bytes) = %q", len(a.ResponseSnippet), a.ResponseSnippet)
		}
		if a.Error != "error \uFFFD" {
			t.Errorf("error = %q", a.Error)
		}
	})

	t.Run("list and redeliver are scoped and keep history", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := e.createHooked("A", []string{"pending"})
		b := e.createHooked("B", []string{"pending"})
		quiet := e.createEcho(func(t *task.Task) { t.OriginTenantID = "A" }).Task
		scopeA, scopeB := store.Scope{TenantID: "A"}, store.Scope{TenantID: "B"}

		if ds, err := e.s.ListDeliveries(e.ctx, a.ID, scopeA); err != nil || len(ds) != 1 {
			t.Fatalf("ListDeliveries(own task) = %v, %v", ds, err)
		}
		for _, tc := range []struct {
			name  string
			id    uuid.UUID
			scope store.Scope
		}{
			{"another tenant's task", a.ID, scopeB},
			{"unknown task", uuid.New(), store.AdminScope},
		} {
			if _, err := e.s.ListDeliveries(e.ctx, tc.id, tc.scope); !errors.Is(err, task.ErrNotFound) {
				t.Errorf("ListDeliveries(%s): err = %v, want task.ErrNotFound", tc.name, err)
			}
		}
		if ds, err := e.s.ListDeliveries(e.ctx, quiet.ID, scopeA); err != nil || ds == nil || len(ds) != 0 {
			t.Errorf("ListDeliveries(task without deliveries) = %#v, %v; want an empty list", ds, err)
		}

		d := e.claimDeliveries(5)
		if len(d) != 2 {
			t.Fatalf("claimed %d, want 2", len(d))
		}
		for _, x := range d {
			e.record(x, 200, store.DeliveryOutcome{Status: store.DeliveryDelivered})
		}
		own := e.deliveries(a.ID)[0]
		for _, tc := range []struct {
			name  string
			id    int64
			scope store.Scope
		}{
			{"another tenant's delivery", own.ID, scopeB},
			{"unknown delivery", 1 << 40, store.AdminScope},
		} {
			if _, err := e.s.Redeliver(e.ctx, tc.id, tc.scope); !errors.Is(err, store.ErrDeliveryNotFound) {
				t.Errorf("Redeliver(%s): err = %v, want ErrDeliveryNotFound", tc.name, err)
			}
		}
		if got := e.deliveries(a.ID)[0]; got.Status != store.DeliveryDelivered {
			t.Errorf("a refused redelivery changed the delivery: %+v", got)
		}

		before := task.Now()
		r, err := e.s.Redeliver(e.ctx, own.ID, scopeA)
		if err != nil {
			t.Fatal(err)
		}
		if r.ID != own.ID || r.Status != store.DeliveryPending || r.Attempts != 1 || r.AttemptsBase != 1 || r.DeliveredAt != nil ||
			len(r.AttemptLog) != 1 || r.LastStatusCode != 200 || r.EventType != "echo_status_update" {
			t.Errorf("redelivered = %+v", r)
		}
		within(t, "redelivered_at", r.RedeliveredAt, before, task.Now())
		if r.NextAttemptAt.After(task.Now()) {
			t.Errorf("redelivered delivery is due at %s, want now", r.NextAttemptAt)
		}
		again := e.claimDeliveries(5)
		if len(again) != 1 || again[0].ID != own.ID || again[0].Attempts != 2 || again[0].AttemptsBase != 1 {
			t.Fatalf("claim after redeliver = %+v", again)
		}
		e.record(again[0], 202, store.DeliveryOutcome{Status: store.DeliveryDelivered})
		final := e.deliveries(a.ID)[0]
		if final.Status != store.DeliveryDelivered || len(final.AttemptLog) != 2 ||
			final.AttemptLog[0].Attempt != 1 || final.AttemptLog[1].Attempt != 2 || final.AttemptLog[1].StatusCode != 202 {
			t.Errorf("after redelivery = %+v", final)
		}
		if other := e.deliveries(b.ID)[0]; other.Attempts != 1 || other.Status != store.DeliveryDelivered {
			t.Errorf("redelivering A's delivery changed B's: %+v", other)
		}
	})
}
