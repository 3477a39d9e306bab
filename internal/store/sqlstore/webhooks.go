package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// deliveryColumns are the columns of webhook_deliveries (alias d) and of
// its event (alias e) in the order scanDelivery reads them.
const deliveryColumns = `d.id, d.event_id, d.task_id, d.url, d.status, d.attempts, d.attempts_base,
d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at, d.delivered_at,
d.redelivered_at, e.event_type, e.status`

func scanDelivery(s rowScanner, extra ...any) (store.Delivery, error) {
	var (
		d                           store.Delivery
		tid, status, evStatus       string
		code                        sql.NullInt64
		updated, delivered, redeliv sql.NullTime
	)
	dest := []any{&d.ID, &d.EventID, &tid, &d.URL, &status, &d.Attempts, &d.AttemptsBase,
		&d.NextAttemptAt, &code, &d.LastError, &d.CreatedAt, &updated, &delivered,
		&redeliv, &d.EventType, &evStatus}
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return d, err
	}
	var err error
	if d.TaskID, err = uuid.Parse(tid); err != nil {
		return d, fmt.Errorf("delivery %d task id %q: %w", d.ID, tid, err)
	}
	d.Status, d.EventStatus = store.DeliveryStatus(status), task.Status(evStatus)
	d.LastStatusCode = int(code.Int64)
	d.NextAttemptAt, d.CreatedAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC()
	d.UpdatedAt, d.DeliveredAt, d.RedeliveredAt = timePtr(updated), timePtr(delivered), timePtr(redeliv)
	return d, nil
}

// ClaimDeliveries implements store.Store. A read on the read pool first
// checks that anything is due, so idle senders woken by every event do not
// take SQLite's only write lock for nothing. The claim itself picks the
// rows once, in a materialised CTE (SKIP LOCKED on PostgreSQL), like
// ClaimTasks.
func (s *Store) ClaimDeliveries(ctx context.Context, limit int, lease time.Duration) ([]store.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	now := task.Now()
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 LIMIT 1`, now).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking for due webhook deliveries: %w", err)
	}
	var out []store.Delivery
	err = s.inTx(ctx, func(tx *txn) error {
		out = out[:0]
		rows, err := tx.QueryContext(ctx, `WITH picked AS MATERIALIZED (SELECT id FROM webhook_deliveries
				WHERE status = 'pending' AND next_attempt_at <= $1
				ORDER BY next_attempt_at, id LIMIT $3`+s.d.skipLocked+`)
			UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $2, updated_at = $1
			WHERE id IN (SELECT id FROM picked) AND status = 'pending'
			RETURNING id`, now, now.Add(lease), limit)
		if err != nil {
			return fmt.Errorf("claiming webhook deliveries: %w", err)
		}
		var ids []any
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return fmt.Errorf("claiming webhook deliveries: %w", err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claiming webhook deliveries: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		// SQLite's RETURNING cannot name a joined table: read the claimed
		// rows with their events in a second statement.
		rows, err = tx.QueryContext(ctx, `SELECT `+deliveryColumns+`, e.body
			FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id
			WHERE d.id IN (`+placeholders(1, len(ids))+`) ORDER BY d.next_attempt_at, d.id`, ids...)
		if err != nil {
			return fmt.Errorf("loading claimed webhook deliveries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var body string
			d, err := scanDelivery(rows, &body)
			if err != nil {
				return fmt.Errorf("loading claimed webhook deliveries: %w", err)
			}
			d.Body = json.RawMessage(body)
			out = append(out, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RecordDeliveryAttempt implements store.Store.
func (s *Store) RecordDeliveryAttempt(ctx context.Context, a store.DeliveryAttempt, o store.DeliveryOutcome) error {
	switch o.Status {
	case store.DeliveryPending, store.DeliveryDelivered, store.DeliveryFailed, store.DeliveryStopped:
	default:
		return fmt.Errorf("recording webhook attempt: unknown outcome %q", o.Status)
	}
	now := task.Now()
	var code any
	if a.StatusCode != 0 {
		code = a.StatusCode
	}
	var deliveredAt, next any
	if o.Status == store.DeliveryDelivered {
		deliveredAt = now
	}
	if o.Status == store.DeliveryPending {
		next = dbTime(o.NextAttemptAt)
	}
	snippet, errText := cleanText(a.ResponseSnippet, store.MaxSnippetBytes), cleanText(a.Error, 4096)
	var lost bool
	err := s.inTx(ctx, func(tx *txn) error {
		// The attempt is history: it is recorded even when the claim was
		// lost, since the request was sent.
		if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_attempts
			(delivery_id, attempt, started_at, duration_ms, status_code, response_snippet, error)
			SELECT `+s.d.cast("$1", "bigint")+`, `+s.d.cast("$2", "integer")+`, `+s.d.cast("$3", "timestamptz")+`,
				`+s.d.cast("$4", "double precision")+`, `+s.d.cast("$5", "integer")+`, `+s.d.cast("$6", "text")+`, `+s.d.cast("$7", "text")+`
			WHERE EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1)`,
			a.DeliveryID, a.Attempt, dbTime(a.StartedAt), float64(a.Duration.Microseconds())/1000, code, snippet, errText); err != nil {
			return fmt.Errorf("recording webhook attempt: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = $1,
			next_attempt_at = COALESCE(`+s.d.cast("$2", "timestamptz")+`, next_attempt_at),
			last_status_code = $3, last_error = $4, updated_at = $5,
			delivered_at = COALESCE(`+s.d.cast("$6", "timestamptz")+`, delivered_at)
			WHERE id = $7 AND attempts = $8 AND status = 'pending'`,
			string(o.Status), next, code, errText, now, deliveredAt, a.DeliveryID, a.Attempt)
		if err != nil {
			return fmt.Errorf("updating webhook delivery: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("updating webhook delivery: %w", err)
		}
		lost = n == 0
		return nil
	})
	if err != nil {
		return err
	}
	if lost {
		return fmt.Errorf("%w: delivery %d is no longer pending at attempt %d", store.ErrDeliveryClaimLost, a.DeliveryID, a.Attempt)
	}
	return nil
}

// cleanText makes s storable in a TEXT column of both databases (valid
// UTF-8, no NUL) and cuts it to at most max bytes on a rune boundary.
func cleanText(s string, max int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// ListDeliveries implements store.Store.
func (s *Store) ListDeliveries(ctx context.Context, taskID uuid.UUID, scope store.Scope) ([]store.Delivery, error) {
	where, args := "id = $1", []any{taskID.String()}
	if !scope.Admin {
		where, args = where+" AND origin_tenant_id = $2", append(args, scope.TenantID)
	}
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM tasks WHERE `+where, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, task.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading task: %w", err)
	}
	return s.loadDeliveries(ctx, s.r, "d.task_id = $1", taskID.String())
}

// loadDeliveries reads the deliveries matching where (over aliases d and
// e), oldest first, with their attempts.
func (s *Store) loadDeliveries(ctx context.Context, q querier, where string, args ...any) ([]store.Delivery, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+deliveryColumns+`
		FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id
		WHERE `+where+` ORDER BY d.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	out := []store.Delivery{}
	index := map[int64]int{}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("listing webhook deliveries: %w", err)
		}
		d.AttemptLog = []store.DeliveryAttempt{}
		index[d.ID] = len(out)
		out = append(out, d)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	rows, err = q.QueryContext(ctx, `SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.response_snippet, a.error
		FROM webhook_attempts a WHERE a.delivery_id IN (SELECT d.id FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id WHERE `+where+`)
		ORDER BY a.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing webhook attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			a    store.DeliveryAttempt
			ms   float64
			code sql.NullInt64
		)
		if err := rows.Scan(&a.DeliveryID, &a.Attempt, &a.StartedAt, &ms, &code, &a.ResponseSnippet, &a.Error); err != nil {
			return nil, fmt.Errorf("listing webhook attempts: %w", err)
		}
		a.StartedAt = a.StartedAt.UTC()
		a.Duration = time.Duration(ms * float64(time.Millisecond))
		a.StatusCode = int(code.Int64)
		if i, ok := index[a.DeliveryID]; ok {
			out[i].AttemptLog = append(out[i].AttemptLog, a)
		}
	}
	return out, rows.Err()
}

// Redeliver implements store.Store.
func (s *Store) Redeliver(ctx context.Context, id int64, scope store.Scope) (*store.Delivery, error) {
	now := task.Now()
	var out *store.Delivery
	err := s.inTx(ctx, func(tx *txn) error {
		where, args := "id = $2", []any{now, id}
		if !scope.Admin {
			where += " AND task_id IN (SELECT id FROM tasks WHERE origin_tenant_id = $3)"
			args = append(args, scope.TenantID)
		}
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1,
			updated_at = $1, delivered_at = NULL, redelivered_at = $1, attempts_base = attempts
			WHERE `+where, args...)
		if err != nil {
			return fmt.Errorf("redelivering webhook delivery: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("redelivering webhook delivery: %w", err)
		} else if n == 0 {
			return store.ErrDeliveryNotFound
		}
		ds, err := s.loadDeliveries(ctx, tx, "d.id = $1", id)
		if err != nil {
			return err
		}
		if len(ds) != 1 {
			return store.ErrDeliveryNotFound
		}
		out = &ds[0]
		// Due work: wake the senders of every process.
		tx.notify(store.Notification{Kind: store.NotifyWake})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
