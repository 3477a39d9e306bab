package sqlstore

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/computeserver/compute/internal/store"
)

// TestClassify pins the mapping from driver errors to store error kinds
// that the API turns into 503 and 507; the end-to-end cases (PostgreSQL
// cut off, SQLite on a full disk) are in internal/api/outage_test.go.
func TestClassify(t *testing.T) {
	pg := func(code string) error { return fmt.Errorf("inserting: %w", &pgconn.PgError{Code: code}) }
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"disk full", pg("53100"), store.ErrFull},
		{"admin shutdown", pg("57P01"), store.ErrUnavailable},
		{"cannot connect now", pg("57P03"), store.ErrUnavailable},
		{"connection failure", pg("08006"), store.ErrUnavailable},
		{"too many connections", pg("53300"), store.ErrUnavailable},
		{"read-only standby", pg("25006"), store.ErrUnavailable},
		{"NUL in text", pg("22021"), store.ErrInvalidText},
		{"NUL in jsonb", pg("22P05"), store.ErrInvalidText},
		{"lost connection", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), store.ErrUnavailable},
		{"closed pool", sql.ErrConnDone, store.ErrUnavailable},
		{"unique violation", pg("23505"), nil},
		{"no rows", sql.ErrNoRows, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("classify lost the original error: %v", got)
			}
			for _, kind := range []error{store.ErrFull, store.ErrUnavailable, store.ErrInvalidText} {
				if errors.Is(got, kind) != (kind == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", got, kind, !(kind == tc.want))
				}
			}
			if again := classify(got); again != got {
				t.Errorf("classifying twice wrapped again: %v", again)
			}
		})
	}
}
