package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

var _ store.Gates = (*Store)(nil)

// TakeStart implements store.Gates. The executor's row is locked (PostgreSQL;
// SQLite's single writer serialises) while its bucket is refilled for the
// time since it was last written and one token taken; when less than one is
// there, the executor is paused until the bucket holds one.
func (s *Store) TakeStart(ctx context.Context, executor string, perMinute int) (time.Duration, error) {
	if perMinute <= 0 {
		return 0, nil
	}
	burst, rate := store.StartBucket(perMinute)
	var wait time.Duration
	err := s.inTx(ctx, func(tx *txn) error {
		wait = 0
		now := task.Now()
		if _, err := tx.ExecContext(ctx, `INSERT INTO executor_state (executor, tokens, tokens_at) VALUES ($1, $2, $3)
			ON CONFLICT (executor) DO NOTHING`, executor, burst, now); err != nil {
			return fmt.Errorf("taking a start of %s: %w", executor, err)
		}
		var (
			tokens float64
			at     sql.NullTime
		)
		if err := tx.QueryRowContext(ctx, `SELECT tokens, tokens_at FROM executor_state e WHERE executor = $1`+s.d.lockOf("e"),
			executor).Scan(&tokens, &at); err != nil {
			return fmt.Errorf("taking a start of %s: %w", executor, err)
		}
		if at.Valid {
			if elapsed := now.Sub(at.Time).Seconds(); elapsed > 0 {
				tokens += elapsed * rate
			}
		} else {
			tokens = burst
		}
		tokens = math.Min(tokens, burst)
		if tokens >= 1 {
			_, err := tx.ExecContext(ctx, `UPDATE executor_state SET tokens = $1, tokens_at = $2 WHERE executor = $3`, tokens-1, now, executor)
			if err != nil {
				return fmt.Errorf("taking a start of %s: %w", executor, err)
			}
			return nil
		}
		wait = time.Duration((1 - tokens) / rate * float64(time.Second)).Round(time.Millisecond)
		wait = max(wait, time.Millisecond)
		reason := fmt.Sprintf("start rate of %d a minute used up", perMinute)
		_, err := tx.ExecContext(ctx, `UPDATE executor_state SET tokens = $1, tokens_at = $2,
			paused_until = CASE WHEN paused_until IS NULL OR paused_until < $3 THEN $3 ELSE paused_until END,
			pause_reason = CASE WHEN paused_until IS NULL OR paused_until < $3 THEN $4 ELSE pause_reason END
			WHERE executor = $5`, tokens, now, dbTime(now.Add(wait)), reason, executor)
		if err != nil {
			return fmt.Errorf("pausing %s: %w", executor, err)
		}
		return nil
	})
	return wait, err
}

// PauseExecutor implements store.Gates.
func (s *Store) PauseExecutor(ctx context.Context, executor string, until time.Time, reason string) error {
	until = dbTime(until)
	_, err := s.w.ExecContext(ctx, `INSERT INTO executor_state (executor, paused_until, pause_reason) VALUES ($1, $2, $3)
		ON CONFLICT (executor) DO UPDATE SET
		paused_until = CASE WHEN executor_state.paused_until IS NULL OR executor_state.paused_until < excluded.paused_until
			THEN excluded.paused_until ELSE executor_state.paused_until END,
		pause_reason = CASE WHEN executor_state.paused_until IS NULL OR executor_state.paused_until < excluded.paused_until
			THEN excluded.pause_reason ELSE executor_state.pause_reason END`, executor, until, reason)
	if err != nil {
		return fmt.Errorf("pausing executor %s: %w", executor, classify(err))
	}
	return nil
}

// ExecutorPauses implements store.Gates.
func (s *Store) ExecutorPauses(ctx context.Context) (map[string]store.ExecutorPause, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT executor, paused_until, pause_reason FROM executor_state WHERE paused_until > $1`, task.Now())
	if err != nil {
		return nil, fmt.Errorf("reading executor pauses: %w", err)
	}
	defer rows.Close()
	out := map[string]store.ExecutorPause{}
	for rows.Next() {
		var (
			name   string
			until  sql.NullTime
			reason string
		)
		if err := rows.Scan(&name, &until, &reason); err != nil {
			return nil, fmt.Errorf("reading executor pauses: %w", err)
		}
		out[name] = store.ExecutorPause{Until: until.Time.UTC(), Reason: reason}
	}
	return out, rows.Err()
}

// notPaused is the claim's condition that a task's executor is not paused
// at now (a placeholder): see store.Gates.
func notPaused(now string) string {
	return ` AND provider_type NOT IN (SELECT executor FROM executor_state WHERE paused_until > ` + now + `)`
}
