package sqlstore

import (
	"context"
	"database/sql"
)

// InTx exposes inTx to the package's external tests.
func (s *Store) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return s.inTx(ctx, func(tx *txn) error { return fn(tx.Tx) })
}
