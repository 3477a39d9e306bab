package sqlstore

import (
	"context"
	"database/sql"
)

// InTx exposes inTx to the package's external tests.
func (s *Store) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, func(tx *txn) error { return fn(tx.Tx) })
}

// SetAfterFinishRead makes FinishRuns call f between its read of the rows
// and its transaction, where another writer may change them.
func (s *Store) SetAfterFinishRead(f func()) { s.afterFinishRead = f }
