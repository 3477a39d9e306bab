package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/pressly/goose/v3/lock"
)

// migrationLockID is the PostgreSQL advisory lock that serialises the
// migrations of one schema: goose's default for "public" (what every
// earlier version took), and one derived from the schema's name for any
// other, so deployments (and tests) in different schemas of one database do
// not wait for each other.
func migrationLockID(schema string) int64 {
	if schema == "public" || schema == "" {
		return lock.DefaultLockID
	}
	h := fnv.New64a()
	h.Write([]byte("compute.migrate." + schema))
	return int64(h.Sum64() & (1<<63 - 1))
}

// migrationLocker returns the session locker of PostgreSQL migrations for
// the schema the store writes to; it logs when it has to wait for another
// process's migration, and when it got the lock.
func (s *Store) migrationLocker(ctx context.Context) (lock.SessionLocker, error) {
	var schema string
	if err := s.w.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return nil, fmt.Errorf("reading the current schema: %w", err)
	}
	id := migrationLockID(schema)
	// Poll every second, for up to 5 minutes.
	inner, err := lock.NewPostgresSessionLocker(lock.WithLockID(id), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, fmt.Errorf("preparing the migration lock: %w", err)
	}
	return &loggedLocker{SessionLocker: inner, id: id, schema: schema, log: s.log}, nil
}

// loggedLocker is a session locker that says when it waits.
type loggedLocker struct {
	lock.SessionLocker
	id     int64
	schema string
	log    *slog.Logger
}

// SessionLock implements lock.SessionLocker: it tries the lock once, and
// if another session holds it, logs the wait, waits through the wrapped
// locker, and logs how long it waited.
func (l *loggedLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, l.id).Scan(&got); err == nil && got {
		return nil
	}
	start := time.Now()
	l.log.Info("waiting for the migration lock: another process is migrating this schema",
		"schema", l.schema, "lock_id", l.id)
	if err := l.SessionLocker.SessionLock(ctx, conn); err != nil {
		return fmt.Errorf("waiting for the migration lock of schema %s: %w", l.schema, err)
	}
	l.log.Info("got the migration lock", "schema", l.schema, "waited", time.Since(start).Round(time.Millisecond))
	return nil
}
