package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/computeserver/compute/internal/store"
)

// minFreeBytes is the free space below which a SQLite store reports itself
// full: a commit that has to grow the WAL or the database file would fail.
const minFreeBytes = 1 << 20

// fullMemory is how long a write transaction that failed for lack of space
// keeps a store whose disk this process cannot see reported full.
const fullMemory = 30 * time.Second

// noteFull remembers when a write transaction failed for lack of space.
func (s *Store) noteFull(err error) {
	if errors.Is(err, store.ErrFull) {
		s.fullAt.Store(time.Now().UnixNano())
	}
}

// CheckWritable implements store.Store. A committed one-row update proves
// that the database takes writes (it is reachable, not read-only, not
// locked past the busy timeout); it does not prove there is room to grow,
// because SQLite rewrites the WAL file in place after a checkpoint and
// PostgreSQL updates the row within its page. So where this process can
// see the database's disk (SQLite), it also checks its free space; where it
// cannot (PostgreSQL, whose disk is the server's), a write that failed for
// lack of space (SQLSTATE 53100) in the last fullMemory keeps the store
// reported full.
func (s *Store) CheckWritable(ctx context.Context) error {
	seen := false
	if s.d.localFile {
		var free uint64
		if free, seen = freeBytes(filepath.Dir(s.dsn)); seen && free < minFreeBytes {
			return fmt.Errorf("%w: %d bytes free beside %s", store.ErrFull, free, s.dsn)
		}
	}
	if at := s.fullAt.Load(); !seen && at != 0 {
		if ago := time.Since(time.Unix(0, at)); ago < fullMemory {
			return fmt.Errorf("%w: a write failed for lack of space %s ago", store.ErrFull, ago.Round(time.Millisecond))
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
