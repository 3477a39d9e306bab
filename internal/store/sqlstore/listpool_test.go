package sqlstore_test

import (
	"sync"
	"testing"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/testutil/seed"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestReplaysStayOffTheWritersConnections runs 24 replays and lists at
// once and checks that none of them took a connection of the writers'
// pool: they queue for the list pool (4 connections on PostgreSQL; the
// read pool on SQLite) instead, so a replay storm cannot starve creates.
func TestReplaysStayOffTheWritersConnections(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			s := seededStore(t, dialect)
			before, _ := s.PoolStats()
			var wg sync.WaitGroup
			errs := make(chan error, 24)
			for i := range 24 {
				wg.Go(func() {
					var err error
					if i%2 == 0 {
						_, err = s.ListEvents(t.Context(), store.EventFilter{Scope: store.Scope{TenantID: seed.Tenant(i, 30)}, Limit: 500})
					} else {
						_, err = s.ListTasks(t.Context(), store.ListFilter{Scope: store.Scope{TenantID: seed.Tenant(i, 30)}, Limit: 500})
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			after, lists := s.PoolStats()
			if after.OpenConnections > before.OpenConnections || after.WaitCount != before.WaitCount {
				t.Errorf("the writers' pool went from %d to %d connections (waits %d → %d) during the replays; want it untouched",
					before.OpenConnections, after.OpenConnections, before.WaitCount, after.WaitCount)
			}
			if lists.MaxOpenConnections != 4 || lists.OpenConnections > 4 {
				t.Errorf("the list pool has %d connections open of at most %d, want at most 4", lists.OpenConnections, lists.MaxOpenConnections)
			}
		})
	}
}
