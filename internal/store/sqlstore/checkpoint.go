package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SQLite's WAL is checkpointed (copied back into the database file) by
// the commit that takes it past wal_autocheckpoint pages: inside the one
// writer every write waits for. The writer runs with autocheckpoint off,
// and a connection of its own checkpoints instead, in PASSIVE mode (it
// never blocks the writer or readers), after commits and at most every
// checkpointInterval. An idle store does not checkpoint at all.

// checkpointInterval is the shortest time between two checkpoints.
const checkpointInterval = 100 * time.Millisecond

func (s *Store) startCheckpointer(path string) error {
	db, err := sql.Open("sqlite", sqliteDSN(path, sqliteCheckpointer))
	if err != nil {
		return fmt.Errorf("opening sqlite: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s.ckpt, s.ckptWake = db, make(chan struct{}, 1)
	if !s.goBackground(s.checkpointer) {
		return db.Close()
	}
	return nil
}

// wrote tells the checkpointer that something was written: a transaction
// committed, or a statement ran on the writer outside one.
func (s *Store) wrote() {
	if s.ckptWake == nil {
		return
	}
	select {
	case s.ckptWake <- struct{}{}:
	default:
	}
}

func (s *Store) checkpointer(ctx context.Context) {
	defer s.ckpt.Close()
	t := time.NewTimer(0)
	<-t.C
	for {
		select {
		case <-ctx.Done():
			s.checkpoint() // leave a short WAL behind
			return
		case <-s.ckptWake:
		}
		s.checkpoint()
		t.Reset(checkpointInterval)
		select {
		case <-ctx.Done():
			s.checkpoint()
			return
		case <-t.C:
		}
	}
}

func (s *Store) checkpoint() {
	if _, err := s.ckpt.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil {
		s.log.Warn("checkpointing the SQLite WAL", "error", err)
	}
}
