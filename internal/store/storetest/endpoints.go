package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// newEndpoint stores an enabled endpoint of tenant with filter f.
func (e *env) newEndpoint(tenant, url string, f store.EndpointFilter) *store.Endpoint {
	e.t.Helper()
	ep := &store.Endpoint{ID: uuid.New(), TenantID: tenant, URL: url, Destination: url, Filter: f, Enabled: true,
		Secret: "whsec_" + uuid.NewString(), CreatedAt: task.Now()}
	if err := e.s.CreateEndpoint(e.ctx, ep); err != nil {
		e.t.Fatalf("CreateEndpoint: %v", err)
	}
	return ep
}

// tenantTask creates an echo task of tenant.
func (e *env) tenantTask(tenant string) *task.Task {
	e.t.Helper()
	return e.createEcho(func(t *task.Task) { t.OriginTenantID = tenant }).Task
}

// byEndpoint returns the URLs of a task's endpoint deliveries, with their
// event status, in order.
func (e *env) byEndpoint(id uuid.UUID) []string {
	e.t.Helper()
	var out []string
	for _, d := range e.deliveries(id) {
		if d.EndpointID != uuid.Nil {
			out = append(out, d.URL+" "+string(d.EventStatus))
		}
	}
	return out
}

func tenantScope(t string) store.Scope { return store.Scope{TenantID: t} }

func testEndpoints(t *testing.T, newEnv func(t *testing.T) *env) {
	t.Run("crud and scope", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := e.newEndpoint("a", "https://a.example/hook", store.EndpointFilter{Statuses: []string{"completed"}})
		b := e.newEndpoint("b", "https://b.example/hook", store.EndpointFilter{})
		g := e.newEndpoint("", "https://admin.example/hook", store.EndpointFilter{TaskTypes: []string{"echo"}, Progress: true})
		got, err := e.s.GetEndpoint(e.ctx, a.ID, tenantScope("a"))
		if err != nil {
			t.Fatal(err)
		}
		if got.URL != a.URL || got.Secret != a.Secret || !got.Enabled || !slices.Equal(got.Filter.Statuses, []string{"completed"}) ||
			!got.CreatedAt.Equal(a.CreatedAt) {
			t.Errorf("GetEndpoint = %+v, want %+v", got, a)
		}
		for _, sc := range []store.Scope{tenantScope("b"), tenantScope("")} {
			if _, err := e.s.GetEndpoint(e.ctx, a.ID, sc); !errors.Is(err, store.ErrEndpointNotFound) {
				t.Errorf("GetEndpoint(a's, %+v) = %v, want ErrEndpointNotFound", sc, err)
			}
			if _, err := e.s.UpdateEndpoint(e.ctx, a.ID, sc, store.EndpointPatch{}); !errors.Is(err, store.ErrEndpointNotFound) {
				t.Errorf("UpdateEndpoint(a's, %+v) = %v, want ErrEndpointNotFound", sc, err)
			}
			if err := e.s.DeleteEndpoint(e.ctx, a.ID, sc); !errors.Is(err, store.ErrEndpointNotFound) {
				t.Errorf("DeleteEndpoint(a's, %+v) = %v, want ErrEndpointNotFound", sc, err)
			}
		}
		list := func(sc store.Scope) []uuid.UUID {
			eps, err := e.s.ListEndpoints(e.ctx, sc)
			if err != nil {
				t.Fatal(err)
			}
			var ids []uuid.UUID
			for _, ep := range eps {
				ids = append(ids, ep.ID)
			}
			return ids
		}
		equal(t, "admin list", list(store.AdminScope), []uuid.UUID{a.ID, b.ID, g.ID})
		equal(t, "tenant b list", list(tenantScope("b")), []uuid.UUID{b.ID})
		off, url := false, "https://a2.example/x"
		up, err := e.s.UpdateEndpoint(e.ctx, a.ID, tenantScope("a"), store.EndpointPatch{Enabled: &off, URL: &url, Destination: &url,
			Filter: &store.EndpointFilter{Progress: true}})
		if err != nil {
			t.Fatal(err)
		}
		if up.Enabled || up.URL != url || up.Destination != url || !up.Filter.Progress || len(up.Filter.Statuses) != 0 || up.Secret != a.Secret {
			t.Errorf("UpdateEndpoint = %+v", up)
		}
		if err := e.s.DeleteEndpoint(e.ctx, b.ID, store.AdminScope); err != nil {
			t.Fatal(err)
		}
		equal(t, "admin list after delete", list(store.AdminScope), []uuid.UUID{a.ID, g.ID})
	})

	t.Run("fan out in the event's transaction", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.newEndpoint("a", "https://a.example/done", store.EndpointFilter{Statuses: []string{"completed"}})
		e.newEndpoint("a", "https://a.example/all", store.EndpointFilter{Progress: true})
		e.newEndpoint("a", "https://a.example/other-type", store.EndpointFilter{TaskTypes: []string{"nope"}})
		e.newEndpoint("a", "https://a.example/event-type", store.EndpointFilter{EventTypes: []string{"echo_status_update"}, Statuses: []string{"pending"}})
		off := e.newEndpoint("a", "https://a.example/off", store.EndpointFilter{})
		disabled := false
		if _, err := e.s.UpdateEndpoint(e.ctx, off.ID, store.AdminScope, store.EndpointPatch{Enabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		e.newEndpoint("b", "https://b.example/all", store.EndpointFilter{})
		e.newEndpoint("", "https://admin.example/all", store.EndpointFilter{Statuses: []string{"pending"}})

		tk := e.tenantTask("a")
		c := e.claim(tk.ID, tk.QueueName)
		if _, err := e.s.SetProgress(e.ctx, store.ProgressUpdate{TaskID: tk.ID, Attempt: c.Task.Attempt, Progress: 40, Lease: time.Minute, Emit: true}); err != nil {
			t.Fatal(err)
		}
		e.setStatus(store.StatusChange{TaskID: tk.ID, Change: task.Change{To: task.StatusCompleted, Attempt: c.Task.Attempt, Result: resultJSON}})
		got := e.byEndpoint(tk.ID)
		want := []string{
			"https://a.example/all pending", "https://a.example/event-type pending", "https://admin.example/all pending",
			"https://a.example/all executing", "https://a.example/all executing", // status, then progress
			"https://a.example/done completed", "https://a.example/all completed",
		}
		slices.Sort(got)
		slices.Sort(want)
		equal(t, "endpoint deliveries", got, want)
		tb := e.tenantTask("b")
		gotB := e.byEndpoint(tb.ID)
		slices.Sort(gotB)
		equal(t, "tenant b's deliveries", gotB, []string{"https://admin.example/all pending", "https://b.example/all pending"})
	})

	t.Run("claims carry the secrets, both during a rotation's overlap", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ep := e.newEndpoint("", "https://x.example/hook", store.EndpointFilter{})
		e.tenantTask("")
		ds := e.claimDeliveries(10)
		if len(ds) != 1 || ds[0].EndpointID != ep.ID || !slices.Equal(ds[0].Secrets, []string{ep.Secret}) {
			t.Fatalf("claim = %+v, want one delivery of the endpoint with its secret", ds)
		}
		rotated, err := e.s.RotateEndpointSecret(e.ctx, ep.ID, store.AdminScope, "whsec_new", task.Now().Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if rotated.Secret != "whsec_new" || rotated.PreviousSecret != ep.Secret || rotated.PreviousUntil == nil {
			t.Errorf("rotated = %+v", rotated)
		}
		e.tenantTask("")
		ds = e.claimDeliveries(10)
		if len(ds) != 1 || !slices.Equal(ds[0].Secrets, []string{"whsec_new", ep.Secret}) {
			t.Fatalf("claim during the overlap = %+v, want both secrets, the new one first", ds)
		}
		if _, err := e.s.RotateEndpointSecret(e.ctx, ep.ID, store.AdminScope, "whsec_newer", time.Time{}); err != nil {
			t.Fatal(err)
		}
		e.tenantTask("")
		ds = e.claimDeliveries(10)
		if len(ds) != 1 || !slices.Equal(ds[0].Secrets, []string{"whsec_newer"}) {
			t.Fatalf("claim after a rotation without overlap = %+v, want the new secret only", ds)
		}
	})

	t.Run("deleting an endpoint stops its pending deliveries", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ep := e.newEndpoint("", "https://x.example/hook", store.EndpointFilter{})
		tk := e.tenantTask("")
		if err := e.s.DeleteEndpoint(e.ctx, ep.ID, store.AdminScope); err != nil {
			t.Fatal(err)
		}
		ds := e.deliveries(tk.ID)
		var mine []store.Delivery
		for _, d := range ds {
			if d.URL == ep.URL {
				mine = append(mine, d)
			}
		}
		if len(mine) != 1 || mine[0].Status != store.DeliveryStopped || mine[0].EndpointID != uuid.Nil {
			t.Fatalf("deliveries after delete = %+v, want one stopped, detached", mine)
		}
		if got := e.claimDeliveries(10); slices.ContainsFunc(got, func(d store.Delivery) bool { return d.URL == ep.URL }) {
			t.Errorf("a deleted endpoint's delivery was claimed: %+v", got)
		}
	})

	t.Run("a tenant does not see an admin endpoint's deliveries of its tasks", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := e.newEndpoint("a", "https://a.example/hook", store.EndpointFilter{})
		g := e.newEndpoint("", "https://admin.example/hook?token=secret", store.EndpointFilter{})
		tk := e.tenantTask("a")
		ds, err := e.s.ListDeliveries(e.ctx, tk.ID, tenantScope("a"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].EndpointID != a.ID {
			t.Errorf("tenant a's view of its task's deliveries = %+v, want its own endpoint's only", ds)
		}
		for _, d := range e.deliveries(tk.ID) {
			_, err := e.s.Redeliver(e.ctx, d.ID, tenantScope("a"))
			switch {
			case d.EndpointID == g.ID && !errors.Is(err, store.ErrDeliveryNotFound):
				t.Errorf("tenant a redelivering the admin endpoint's delivery: %v, want ErrDeliveryNotFound", err)
			case d.EndpointID == a.ID && err != nil:
				t.Errorf("tenant a redelivering its own endpoint's delivery: %v", err)
			}
		}
	})

	t.Run("failed deliveries across tasks, paged, and bulk redelivery", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a := e.newEndpoint("a", "https://a.example/hook", store.EndpointFilter{})
		g := e.newEndpoint("", "https://admin.example/hook", store.EndpointFilter{})
		for range 3 {
			e.tenantTask("a")
		}
		e.tenantTask("b")
		// Fail every delivery but the first claimed.
		ds := e.claimDeliveries(100)
		if len(ds) != 7 {
			t.Fatalf("claimed %d deliveries, want 7 (3 of a's tasks × 2 endpoints, b's task × the admin's)", len(ds))
		}
		for i, d := range ds {
			o := store.DeliveryOutcome{Status: store.DeliveryFailed}
			if i == 0 {
				o.Status = store.DeliveryDelivered
			}
			e.record(d, 500, o)
		}
		page := func(f store.DeliveryFilter) store.DeliveryPage {
			p, err := e.s.ListDeliveryPage(e.ctx, f)
			if err != nil {
				t.Fatalf("ListDeliveryPage(%+v): %v", f, err)
			}
			return p
		}
		var seen []int64
		f := store.DeliveryFilter{Scope: store.AdminScope, Statuses: []store.DeliveryStatus{store.DeliveryFailed}, Limit: 3}
		for {
			p := page(f)
			for _, d := range p.Deliveries {
				if d.Status != store.DeliveryFailed {
					t.Errorf("status filter let %+v through", d)
				}
				seen = append(seen, d.ID)
			}
			if p.NextCursor == "" {
				break
			}
			f.Cursor = p.NextCursor
		}
		if len(seen) != 6 || !slices.IsSortedFunc(seen, func(x, y int64) int { return int(y - x) }) {
			t.Errorf("failed deliveries over pages = %v, want 6, newest first", seen)
		}
		// Tenant a sees its own tasks' deliveries to its own endpoint only.
		pa := page(store.DeliveryFilter{Scope: tenantScope("a"), Statuses: []store.DeliveryStatus{store.DeliveryFailed, store.DeliveryDelivered}})
		for _, d := range pa.Deliveries {
			if d.EndpointID != a.ID {
				t.Errorf("tenant a sees %+v", d)
			}
		}
		if len(pa.Deliveries) != 3 {
			t.Errorf("tenant a sees %d deliveries, want 3", len(pa.Deliveries))
		}
		if n := len(page(store.DeliveryFilter{Scope: store.AdminScope, EndpointID: g.ID}).Deliveries); n != 4 {
			t.Errorf("the admin endpoint's deliveries: %d, want 4", n)
		}
		if _, err := e.s.ListDeliveryPage(e.ctx, store.DeliveryFilter{Scope: store.AdminScope, Cursor: "nope"}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("bad cursor: %v, want ErrBadCursor", err)
		}

		// Tenant b cannot redeliver a's; a redelivers its failed ones.
		if ids, err := e.s.RedeliverMany(e.ctx, store.DeliveryFilter{Scope: tenantScope("b"), IDs: seen}); err != nil || len(ids) != 0 {
			t.Errorf("tenant b redelivered %v (%v), want none", ids, err)
		}
		ids, err := e.s.RedeliverMany(e.ctx, store.DeliveryFilter{Scope: tenantScope("a"), Statuses: []store.DeliveryStatus{store.DeliveryFailed}})
		if err != nil {
			t.Fatal(err)
		}
		want := len(pa.Deliveries)
		if ds[0].EndpointID == a.ID {
			want-- // the delivered one
		}
		if len(ids) != want {
			t.Errorf("tenant a redelivered %v, want %d", ids, want)
		}
		again := e.claimDeliveries(100)
		equal(t, "claimable after redelivery", deliveryIDs(again), ids)
		for _, d := range again {
			if d.Attempts-d.AttemptsBase != 1 {
				t.Errorf("redelivered %d: attempts %d base %d, want a fresh budget", d.ID, d.Attempts, d.AttemptsBase)
			}
		}
		// By ids, limited.
		ids, err = e.s.RedeliverMany(e.ctx, store.DeliveryFilter{Scope: store.AdminScope, IDs: seen, Limit: 2})
		if err != nil || len(ids) != 2 {
			t.Errorf("admin redelivered %v (%v), want 2", ids, err)
		}
	})
}
