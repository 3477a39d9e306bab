package sqlstore

import (
	"context"
	"database/sql"
)

// InTx exposes inTx to the package's external tests.
func (s *Store) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, func(tx *txn) error { return fn(tx.Tx) })
}

// SetAfterRead makes FinishRuns (op "finish") and SQLite's claim (op
// "claim") call f between their read of the rows and their transaction,
// where another writer may change them.
func (s *Store) SetAfterRead(f func(op string)) { s.afterRead = f }

// EventOrderLock is the advisory lock key of the event-order lock.
const EventOrderLock = eventOrderLock

// MigrationLockID exposes migrationLockID to the package's external tests.
var MigrationLockID = migrationLockID
