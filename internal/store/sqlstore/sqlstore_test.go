package sqlstore_test

import (
	"testing"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/storetest"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestConformance runs the store conformance suite against every dialect.
func TestConformance(t *testing.T) {
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, func(t *testing.T, reg *registry.Registry) store.Store {
				return testdb.Open(t, dialect, reg)
			})
		})
	}
}
