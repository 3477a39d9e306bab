package sqlstore

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/computeserver/compute/internal/store"
)

// minFreeBytes is the free space below which a SQLite store reports itself
// full: a commit that has to grow the WAL or the database file would fail.
const minFreeBytes = 1 << 20

// CheckWritable implements store.Store. A committed one-row update proves
// that the database takes writes (it is reachable, not read-only, not
// locked past the busy timeout); it does not prove there is room to grow,
// because SQLite rewrites the WAL file in place after a checkpoint and
// PostgreSQL writes into preallocated WAL segments. So on SQLite, whose
// disk this process can see, it also checks the free space of the
// database's file system. PostgreSQL's disk is the server's: a full one
// shows as SQLSTATE 53100 on the writes that need space (ErrFull), or as
// an unavailable server.
func (s *Store) CheckWritable(ctx context.Context) error {
	if s.d.name == sqliteDialect.name {
		if free, ok := freeBytes(filepath.Dir(s.dsn)); ok && free < minFreeBytes {
			return fmt.Errorf("%w: %d bytes free beside %s", store.ErrFull, free, s.dsn)
		}
	}
	err := s.inTx(ctx, func(tx *txn) error {
		_, err := tx.ExecContext(ctx, `UPDATE store_health SET writes = writes + 1 WHERE id = 1`)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing the health row: %w", err)
	}
	return nil
}
