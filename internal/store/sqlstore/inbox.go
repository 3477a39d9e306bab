package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

var _ store.Inbox = (*Store)(nil)

// OpenInbox implements store.Inbox: it deletes the expired inboxes, then
// inserts the inbox or, when it is there, sets its auth and expiry. The
// two statements are separate: a sweep another process runs at once
// deletes the same rows, and neither holds locks for the other's insert.
func (s *Store) OpenInbox(ctx context.Context, hash, auth string, until time.Time) error {
	now := dbTime(task.Now())
	if _, err := s.w.ExecContext(ctx, `DELETE FROM executor_inbox WHERE expires_at < $1`, now); err != nil {
		return fmt.Errorf("deleting expired inboxes: %w", err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO executor_inbox (token_hash, auth_hash, created_at, expires_at)
		VALUES ($1, $2, $3, $4)
		ON CONFLICT (token_hash) DO UPDATE SET auth_hash = excluded.auth_hash, expires_at = excluded.expires_at`,
		hash, auth, now, dbTime(until))
	if err != nil {
		return fmt.Errorf("opening an inbox: %w", err)
	}
	return nil
}

// ReadInbox implements store.Inbox.
func (s *Store) ReadInbox(ctx context.Context, hash string, after int64) (store.InboxMessage, error) {
	var m store.InboxMessage
	err := s.r.QueryRowContext(ctx, `SELECT seq, final, auth_hash, expires_at, CASE WHEN seq > $2 THEN body END
		FROM executor_inbox WHERE token_hash = $1 AND expires_at >= $3`, hash, after, dbTime(task.Now())).
		Scan(&m.Seq, &m.Final, &m.Auth, &m.ExpiresAt, &m.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return m, store.ErrInboxNotFound
	}
	if err != nil {
		return m, fmt.Errorf("reading an inbox: %w", err)
	}
	m.ExpiresAt = m.ExpiresAt.UTC()
	return m, nil
}

// PostInbox implements store.Inbox with one UPDATE conditional on the
// inbox taking messages still: of two posts at once, a final one and
// another, the one written last does not replace a final message.
func (s *Store) PostInbox(ctx context.Context, hash string, body []byte, final bool, until time.Time) (bool, error) {
	if body == nil {
		body = []byte{}
	}
	now := dbTime(task.Now())
	res, err := s.w.ExecContext(ctx, `UPDATE executor_inbox SET body = $1, final = $2, seq = seq + 1, expires_at = $3
		WHERE token_hash = $4 AND NOT final AND expires_at >= $5`, body, final, dbTime(until), hash, now)
	if err != nil {
		return false, fmt.Errorf("posting to an inbox: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("posting to an inbox: %w", err)
	}
	if n == 1 {
		return true, nil
	}
	// Nothing written: the inbox is final, or missing.
	var exists int
	err = s.r.QueryRowContext(ctx, `SELECT 1 FROM executor_inbox WHERE token_hash = $1 AND expires_at >= $2`, hash, now).Scan(&exists)
	if errors.Is(err, sql.ErrNoRows) {
		return false, store.ErrInboxNotFound
	}
	if err != nil {
		return false, fmt.Errorf("posting to an inbox: %w", err)
	}
	return false, nil
}

// CloseInbox implements store.Inbox.
func (s *Store) CloseInbox(ctx context.Context, hash string, until time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE executor_inbox SET final = $1, body = NULL, expires_at = $2 WHERE token_hash = $3`,
		true, dbTime(until), hash)
	if err != nil {
		return fmt.Errorf("closing an inbox: %w", err)
	}
	return nil
}
