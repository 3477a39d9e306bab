package sqlstore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/echo"
	"github.com/computeserver/compute/internal/testutil/seed"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// seededStore opens a store of the dialect holding 20,000 completed tasks
// and 50 failed ones over 30 tenants and 5 queues, 40,000 events on them,
// with fresh planner statistics.
func seededStore(t *testing.T, dialect string) *sqlstore.Store {
	t.Helper()
	reg := registry.New()
	reg.MustRegister(echo.Type())
	s := testdb.Open(t, dialect, reg)
	ctx, db := t.Context(), s.DB()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const tasks = 20000
	if err := seed.InsertTasks(ctx, db, dialect, seed.Tasks{Batch: 1, N: tasks, Status: "completed", Tenants: 30, Queues: 5, Start: start, Step: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := seed.InsertTasks(ctx, db, dialect, seed.Tasks{Batch: 2, N: 50, Status: "failed", Tenants: 30, Queues: 5, Start: start, Step: time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := seed.InsertEvents(ctx, db, dialect, seed.Events{Batch: 1, Tasks: tasks, Tenants: 30, N: 2 * tasks, Start: start, Step: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := seed.Analyze(ctx, db); err != nil {
		t.Fatal(err)
	}
	return s
}

// usesIndex fails unless plan reads through index and neither scans the
// table nor sorts: PostgreSQL's EXPLAIN names the index in an Index Scan
// (or Index Only Scan) and has no Seq Scan or Sort; SQLite's EXPLAIN QUERY
// PLAN says USING INDEX and no TEMP B-TREE.
func usesIndex(t *testing.T, dialect, what, plan, index string) {
	t.Helper()
	var bad []string
	if dialect == "postgres" {
		if !strings.Contains(plan, "Index Scan using "+index) && !strings.Contains(plan, "Index Only Scan using "+index) {
			bad = append(bad, "no Index Scan using "+index)
		}
		for _, no := range []string{"Seq Scan", "Sort"} {
			if strings.Contains(plan, no) {
				bad = append(bad, "a "+no)
			}
		}
	} else {
		if !strings.Contains(plan, "USING INDEX "+index) && !strings.Contains(plan, "USING COVERING INDEX "+index) {
			bad = append(bad, "no USING INDEX "+index)
		}
		if strings.Contains(plan, "TEMP B-TREE") {
			bad = append(bad, "a sort (TEMP B-TREE)")
		}
	}
	if len(bad) > 0 {
		t.Errorf("%s: %s in the plan:\n%s", what, strings.Join(bad, ", "), plan)
	}
}

// TestEventReplayUsesIndexes checks that every filter of the event streams
// reads task_events through an index in id order: a tenant's replay from
// id 0 must not scan the log (issue 10: 30 such replays on a 440k-event
// PostgreSQL log cut creates from 1,787/s to 14/s).
func TestEventReplayUsesIndexes(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := seededStore(t, dialect)
			tenant := store.Scope{TenantID: seed.Tenant(7, 30)}
			for _, tc := range []struct {
				name  string
				f     store.EventFilter
				index string
			}{
				{"tenant key replay from 0", store.EventFilter{Scope: tenant, Limit: 500}, "task_events_tenant"},
				{"tenant key replay with its own tenant filter", store.EventFilter{Scope: tenant, TenantID: tenant.TenantID, Limit: 500}, "task_events_tenant"},
				{"admin replay of one tenant", store.EventFilter{Scope: store.AdminScope, TenantID: tenant.TenantID, Limit: 500}, "task_events_tenant"},
				{"admin replay of one status", store.EventFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusFailed}, Limit: 500}, "task_events_status"},
				{"admin replay of one type", store.EventFilter{Scope: store.AdminScope, TaskTypes: []string{"other"}, Limit: 500}, "task_events_type"},
			} {
				plan, err := s.EventsPlan(t.Context(), tc.f)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				usesIndex(t, dialect, tc.name, plan, tc.index)
			}
			// The plans are of the query ListEvents runs: it answers.
			evs, err := s.ListEvents(t.Context(), store.EventFilter{Scope: tenant, Limit: 500})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != 500 || evs[0].TenantID != tenant.TenantID {
				t.Fatalf("tenant replay returned %d events (first %+v), want 500 of %s", len(evs), evs[0], tenant.TenantID)
			}
		})
	}
}

// TestTaskListUsesIndexes checks that every filter of the task list reads
// tasks through an index already in the list's order (newest first), so
// status=failed among many completed tasks reads only the failed ones.
func TestTaskListUsesIndexes(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := seededStore(t, dialect)
			tenant := store.Scope{TenantID: seed.Tenant(3, 30)}
			failed, err := s.ListTasks(t.Context(), store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusFailed}, Limit: 20})
			if err != nil {
				t.Fatal(err)
			}
			if len(failed.Records) != 20 || failed.NextCursor == "" {
				t.Fatalf("status=failed page: %d tasks, cursor %q; want 20 and a cursor", len(failed.Records), failed.NextCursor)
			}
			for _, tc := range []struct {
				name  string
				f     store.ListFilter
				index string
			}{
				{"status", store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusFailed}}, "tasks_status_created"},
				{"status, next page", store.ListFilter{Scope: store.AdminScope, Statuses: []task.Status{task.StatusFailed}, Cursor: failed.NextCursor}, "tasks_status_created"},
				{"task type", store.ListFilter{Scope: store.AdminScope, TaskTypes: []string{"other"}}, "tasks_type_created"},
				{"queue", store.ListFilter{Scope: store.AdminScope, QueueNames: []string{"queue-2"}}, "tasks_queue_created"},
				{"tenant (admin filter)", store.ListFilter{Scope: store.AdminScope, TenantID: tenant.TenantID}, "tasks_tenant"},
				{"tenant key", store.ListFilter{Scope: tenant}, "tasks_tenant"},
				{"tenant key and status", store.ListFilter{Scope: tenant, Statuses: []task.Status{task.StatusFailed}}, "tasks_tenant_status_created"},
				{"no filter", store.ListFilter{Scope: store.AdminScope}, "tasks_created"},
				{"time range", store.ListFilter{Scope: store.AdminScope, CreatedAfter: time.Date(2026, 1, 1, 0, 0, 5, 0, time.UTC),
					CreatedBefore: time.Date(2026, 1, 1, 0, 0, 6, 0, time.UTC)}, "tasks_created"},
			} {
				plan, err := s.ListPlan(t.Context(), tc.f)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				usesIndex(t, dialect, tc.name, plan, tc.index)
			}
		})
	}
}

// TestEngineQueriesUseTheirIndexes checks that the engine's reads of the
// tasks table go through their partial indexes on a freshly migrated
// database, as the server runs it (SQLite is never ANALYZEd): without
// statistics SQLite preferred the task list's (status, created_at) index
// and sorted every pending or executing task on every claim and sweep,
// which cut SQLite's throughput from ~15.5k to ~9k tasks/s.
func TestEngineQueriesUseTheirIndexes(t *testing.T) {
	t.Parallel()
	want := map[string]string{
		"claim": "tasks_fair", "lease sweep": "tasks_lease", "start deadline": "tasks_start_deadline",
	}
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			reg := registry.New()
			reg.MustRegister(echo.Type())
			plans, err := testdb.Open(t, dialect, reg).EnginePlans(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for name, plan := range plans {
				if dialect == "postgres" {
					// PostgreSQL plans from statistics, which an empty
					// table does not have; that the statement plans is
					// what is checked here.
					if plan == "" {
						t.Errorf("%s: no plan", name)
					}
					continue
				}
				if name == "instance" {
					// A restart's recovery reads its own executing tasks
					// through the lease index and sorts them by id.
					if !strings.Contains(plan, "USING INDEX tasks_lease") {
						t.Errorf("instance: not through tasks_lease:\n%s", plan)
					}
					continue
				}
				usesIndex(t, dialect, name, plan, want[name])
			}
		})
	}
}
