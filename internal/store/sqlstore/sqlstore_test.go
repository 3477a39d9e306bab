package sqlstore_test

import (
	"context"
	"testing"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
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

// TestCloseStopsBackground: Close ends every goroutine the store started,
// the LISTEN connection a subscriber started included, and a second Close
// is harmless.
func TestCloseStopsBackground(t *testing.T) {
	for _, dialect := range testdb.Dialects {
		t.Run(dialect, func(t *testing.T) {
			url := testdb.URL(t, dialect)
			before := goleak.IgnoreCurrent()
			st, err := sqlstore.Open(t.Context(), url, registry.New(), testdb.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			_ = st.Subscribe(ctx)
			cancel()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			goleak.VerifyNone(t, before)
		})
	}
}
