package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// PruneEvents deletes old events, one short statement per call so that
// writers interleave with it: of the next limit events after afterID (in
// id order), those created before before, except
//   - the events of tasks that are pending or executing (a live task's
//     stream replays its whole history),
//   - events whose webhook delivery is still pending (the delivery needs
//     its event), and
//   - the newest event of the log (so the log's position survives).
//
// Deliveries and attempts of deleted events go with them (foreign keys).
// It returns how many events it deleted and where the next call starts;
// next is 0 when the window reached the log's end or an event created at
// or after before (ids follow time), so the caller stops.
func (s *Store) PruneEvents(ctx context.Context, before time.Time, afterID int64, limit int) (deleted int, next int64, err error) {
	if limit <= 0 {
		limit = 1000
	}
	cutoff := dbTime(before)
	var (
		hi      int64
		n       int
		reached bool
	)
	err = s.lists.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0), COUNT(*), COALESCE(MAX(CASE WHEN created_at >= $2 THEN 1 ELSE 0 END), 0)
		FROM (SELECT id, created_at FROM task_events WHERE id > $1 ORDER BY id LIMIT $3) w`, afterID, cutoff, limit).Scan(&hi, &n, &reached)
	if err != nil {
		return 0, 0, fmt.Errorf("pruning events: finding the window: %w", err)
	}
	if n == 0 {
		return 0, 0, nil
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM task_events WHERE id > $1 AND id <= $2 AND created_at < $3
		AND id < (SELECT MAX(id) FROM task_events)
		AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = task_events.task_id AND t.status IN ('pending', 'executing'))
		AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = task_events.id AND d.status = 'pending')`,
		afterID, hi, cutoff)
	if err != nil {
		return 0, 0, fmt.Errorf("pruning events: %w", err)
	}
	d, err := res.RowsAffected()
	if err != nil {
		return 0, 0, fmt.Errorf("pruning events: %w", err)
	}
	if reached || n < limit {
		hi = 0
	}
	return int(d), hi, nil
}
