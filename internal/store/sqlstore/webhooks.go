package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// deliveryColumns are the columns of webhook_deliveries (alias d) and of
// its event (alias e) in the order scanDelivery reads them.
const deliveryColumns = `d.id, d.event_id, d.task_id, d.url, d.destination, d.status, d.attempts, d.attempts_base,
d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.updated_at, d.delivered_at,
d.redelivered_at, e.event_type, e.status, d.endpoint_id`

func scanDelivery(s rowScanner, extra ...any) (store.Delivery, error) {
	var (
		d                           store.Delivery
		tid, status, evStatus       string
		code                        sql.NullInt64
		endpoint                    sql.NullString
		updated, delivered, redeliv sql.NullTime
	)
	dest := []any{&d.ID, &d.EventID, &tid, &d.URL, &d.Destination, &status, &d.Attempts, &d.AttemptsBase,
		&d.NextAttemptAt, &code, &d.LastError, &d.CreatedAt, &updated, &delivered,
		&redeliv, &d.EventType, &evStatus, &endpoint}
	if err := s.Scan(append(dest, extra...)...); err != nil {
		return d, err
	}
	var err error
	if d.TaskID, err = uuid.Parse(tid); err != nil {
		return d, fmt.Errorf("delivery %d task id %q: %w", d.ID, tid, err)
	}
	if endpoint.Valid {
		if d.EndpointID, err = uuid.Parse(endpoint.String); err != nil {
			return d, fmt.Errorf("delivery %d endpoint id %q: %w", d.ID, endpoint.String, err)
		}
	}
	d.Status, d.EventStatus = store.DeliveryStatus(status), task.Status(evStatus)
	d.LastStatusCode = int(code.Int64)
	d.NextAttemptAt, d.CreatedAt = d.NextAttemptAt.UTC(), d.CreatedAt.UTC()
	d.UpdatedAt, d.DeliveredAt, d.RedeliveredAt = timePtr(updated), timePtr(delivered), timePtr(redeliv)
	return d, nil
}

// deliveryClaimLock serialises delivery claims on PostgreSQL, so two
// senders cannot both count a destination's claims in flight and both
// take its last free slot. Claims are short; SQLite's single writer
// serialises them by itself.
const deliveryClaimLock = "compute.webhooks.claim"

// dueDestinationsSQL lists the destinations with due deliveries, the one
// with the oldest due delivery first, each with how many are due (at most
// $2). It walks the destinations of pending deliveries through the
// (destination, next_attempt_at) index, one seek each, so its cost grows
// with the number of destinations, not of deliveries: a backlog of due
// deliveries for one slow destination does not slow every claim.
const dueDestinationsSQL = `WITH RECURSIVE dests(destination) AS (
		SELECT (SELECT destination FROM webhook_deliveries WHERE status = 'pending' ORDER BY destination LIMIT 1)
		UNION ALL
		SELECT (SELECT w.destination FROM webhook_deliveries w WHERE w.status = 'pending' AND w.destination > d.destination
			ORDER BY w.destination LIMIT 1)
		FROM dests d WHERE d.destination IS NOT NULL),
	oldest AS MATERIALIZED (SELECT d.destination, (SELECT w.next_attempt_at FROM webhook_deliveries w
			WHERE w.status = 'pending' AND w.destination = d.destination AND w.next_attempt_at <= $1
			ORDER BY w.destination, w.next_attempt_at LIMIT 1) AS at
		FROM dests d WHERE d.destination IS NOT NULL)
	SELECT o.destination, (SELECT COUNT(*) FROM (SELECT 1 FROM webhook_deliveries w WHERE w.status = 'pending'
			AND w.destination = o.destination AND w.next_attempt_at <= $1 ORDER BY w.destination, w.next_attempt_at LIMIT $2) due)
	FROM oldest o WHERE o.at IS NOT NULL ORDER BY o.at, o.destination`

// dueDestination is a row of dueDestinationsSQL.
type dueDestination struct {
	name string
	due  int
}

// ClaimDeliveries implements store.Store. The destinations with due
// deliveries are read on the read pool first (nothing due: no write
// transaction, so idle senders woken by every event do not take SQLite's
// only write lock for nothing). The write transaction then counts each
// destination's deliveries in flight, shares the claim out in turns
// (shareTurns) and claims each chosen destination's oldest due deliveries,
// in one statement.
func (s *Store) ClaimDeliveries(ctx context.Context, c store.DeliveryClaim) ([]store.Delivery, error) {
	if c.Limit <= 0 {
		return nil, nil
	}
	now := task.Now()
	rows, err := s.r.QueryContext(ctx, dueDestinationsSQL, now, c.Limit)
	if err != nil {
		return nil, fmt.Errorf("looking for due webhook deliveries: %w", err)
	}
	var due []dueDestination
	for rows.Next() {
		var d dueDestination
		if err := rows.Scan(&d.name, &d.due); err != nil {
			rows.Close()
			return nil, fmt.Errorf("looking for due webhook deliveries: %w", err)
		}
		if !slices.Contains(c.Skip, d.name) {
			due = append(due, d)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looking for due webhook deliveries: %w", err)
	}
	if len(due) == 0 {
		return nil, nil
	}
	var out []store.Delivery
	err = s.inTx(ctx, func(tx *txn) error {
		out = out[:0]
		if s.d.caps.SkipLocked {
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, deliveryClaimLock); err != nil {
				return fmt.Errorf("locking webhook claims: %w", err)
			}
		}
		busy, err := s.deliveriesInFlight(ctx, tx, now)
		if err != nil {
			return err
		}
		shares := shareTurns(due, busy, c)
		if len(shares) == 0 {
			return nil
		}
		var p params
		nowP, untilP := p.add(now), p.add(now.Add(c.Lease))
		parts := make([]string, len(shares))
		for i, sh := range shares {
			parts[i] = `SELECT id FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending'
				AND destination = ` + p.add(sh.name) + ` AND next_attempt_at <= ` + nowP + ` ORDER BY next_attempt_at, id LIMIT ` + p.add(sh.due) + `) p` + strconv.Itoa(i)
		}
		rows, err := tx.QueryContext(ctx, `UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = `+untilP+`,
				claimed_until = `+untilP+`, updated_at = `+nowP+`
			WHERE status = 'pending' AND id IN (`+strings.Join(parts, " UNION ALL ")+`)
			RETURNING id`, p.vals...)
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
		var byID params
		rows, err = tx.QueryContext(ctx, `SELECT `+deliveryColumns+`, e.body, COALESCE(t.trace_parent, '')
			FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id LEFT JOIN tasks t ON t.id = d.task_id
			WHERE d.id IN (`+byID.list(ids...)+`) ORDER BY d.next_attempt_at, d.id`, byID.vals...)
		if err != nil {
			return fmt.Errorf("loading claimed webhook deliveries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var body, traceParent string
			d, err := scanDelivery(rows, &body, &traceParent)
			if err != nil {
				return fmt.Errorf("loading claimed webhook deliveries: %w", err)
			}
			d.Body, d.TraceParent = json.RawMessage(body), traceParent
			out = append(out, d)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("loading claimed webhook deliveries: %w", err)
		}
		rows.Close()
		return s.loadSecrets(ctx, tx, out, now)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// deliveriesInFlight counts the claimed deliveries whose lease has not
// ended, by destination (a small partial index: only claims in flight,
// and those of senders that died, are in it).
func (s *Store) deliveriesInFlight(ctx context.Context, tx *txn, now time.Time) (map[string]int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT destination, COUNT(*) FROM webhook_deliveries
		WHERE claimed_until IS NOT NULL AND claimed_until > $1 AND status = 'pending' GROUP BY destination`, now)
	if err != nil {
		return nil, fmt.Errorf("counting webhook deliveries in flight: %w", err)
	}
	defer rows.Close()
	busy := map[string]int{}
	for rows.Next() {
		var (
			dest string
			n    int
		)
		if err := rows.Scan(&dest, &n); err != nil {
			return nil, fmt.Errorf("counting webhook deliveries in flight: %w", err)
		}
		busy[dest] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting webhook deliveries in flight: %w", err)
	}
	return busy, nil
}

// shareTurns shares c.Limit claims among the destinations with due
// deliveries (due, oldest first) in turns: a destination's k-th delivery
// in flight, counting those already in flight (busy), is taken in turn k,
// so every destination gets its first before any gets its second, and
// one within a turn goes by the age of its oldest due delivery. A
// destination takes at most c.PerDestination in flight (1 when probed)
// and at most what it has due. It returns how many to take from each.
func shareTurns(due []dueDestination, busy map[string]int, c store.DeliveryClaim) []dueDestination {
	free := make([]int, len(due))
	for i, d := range due {
		limit := c.PerDestination
		if limit <= 0 {
			limit = math.MaxInt
		}
		if slices.Contains(c.Probe, d.name) {
			limit = 1
		}
		free[i] = max(0, min(d.due, limit-busy[d.name]))
	}
	take := make([]int, len(due))
	left := c.Limit
	for turn := 1; left > 0; turn++ {
		more := false
		for i, d := range due {
			next := busy[d.name] + take[i] + 1 // the turn of its next delivery
			if take[i] >= free[i] || next > turn {
				more = more || take[i] < free[i]
				continue
			}
			take[i]++
			left--
			more = true
			if left == 0 {
				break
			}
		}
		if !more {
			break
		}
	}
	var out []dueDestination
	for i, d := range due {
		if take[i] > 0 {
			out = append(out, dueDestination{name: d.name, due: take[i]})
		}
	}
	return out
}

// PostponeDeliveries implements store.Store.
func (s *Store) PostponeDeliveries(ctx context.Context, p store.Postponement) (postponed, failed int, err error) {
	now := task.Now()
	waiting := `destination = $1 AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $2)`
	err = s.inTx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'failed', last_error = $3, updated_at = $2
			WHERE `+waiting+` AND COALESCE(redelivered_at, created_at) < $4`,
			p.Destination, now, cleanText(p.Reason, 4096), dbTime(p.FailWindowsBefore))
		if err != nil {
			return fmt.Errorf("failing webhook deliveries past their window: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return fmt.Errorf("failing webhook deliveries past their window: %w", err)
		}
		failed = int(n)
		res, err = tx.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = $3, updated_at = $2
			WHERE `+waiting+` AND next_attempt_at < $3`, p.Destination, now, dbTime(p.Until))
		if err != nil {
			return fmt.Errorf("postponing webhook deliveries: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("postponing webhook deliveries: %w", err)
		}
		postponed = int(n)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return postponed, failed, nil
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
			last_status_code = $3, last_error = $4, updated_at = $5, claimed_until = NULL,
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
	return s.ownDeliveries(ctx, "tasks", "origin_tenant_id", taskID, scope, task.ErrNotFound)
}

// ListWorkflowDeliveries implements store.Workflows.
func (s *Store) ListWorkflowDeliveries(ctx context.Context, workflowID uuid.UUID, scope store.Scope) ([]store.Delivery, error) {
	return s.ownDeliveries(ctx, "workflows", "tenant_id", workflowID, scope, store.ErrWorkflowNotFound)
}

// ownDeliveries lists the deliveries of the events of id, a row of table
// (tasks or workflows, whose tenant column is tenantCol; a workflow's
// deliveries have its id as task_id); notFound when the row is not in
// scope.
func (s *Store) ownDeliveries(ctx context.Context, table, tenantCol string, id uuid.UUID, scope store.Scope, notFound error) ([]store.Delivery, error) {
	where, args := "id = $1", []any{id.String()}
	if !scope.Admin {
		where, args = where+" AND "+tenantCol+" = $2", append(args, scope.TenantID)
	}
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM `+table+` WHERE `+where, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading %s row: %w", table, err)
	}
	if !scope.Admin {
		// Not the deliveries made for an admin's endpoint that receives
		// every tenant's events: their URL is the admin's.
		return s.loadDeliveries(ctx, s.r, "d.task_id = $1 AND "+tenantEndpoints("d.endpoint_id", "$2"), id.String(), scope.TenantID)
	}
	return s.loadDeliveries(ctx, s.r, "d.task_id = $1", id.String())
}

// tenantOwns is the condition that keeps the deliveries of a tenant's
// tasks and workflows (a workflow's deliveries have its id as task_id).
// column is the deliveries' task_id column, tenant the tenant id's
// placeholder.
func tenantOwns(column, tenant string) string {
	return "(" + column + " IN (SELECT id FROM tasks WHERE origin_tenant_id = " + tenant + ") OR " +
		column + " IN (SELECT id FROM workflows WHERE tenant_id = " + tenant + "))"
}

// tenantEndpoints is the condition that keeps a tenant's deliveries: those
// without an endpoint and those of the tenant's own endpoints. column is
// the deliveries' endpoint_id column, tenant the tenant id's placeholder.
func tenantEndpoints(column, tenant string) string {
	return "(" + column + " IS NULL OR " + column + " IN (SELECT id FROM webhook_endpoints WHERE tenant_id <> '' AND tenant_id = " + tenant + "))"
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
			where += " AND " + tenantOwns("task_id", "$3") + " AND " + tenantEndpoints("endpoint_id", "$3")
			args = append(args, scope.TenantID)
		}
		res, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1,
			updated_at = $1, delivered_at = NULL, redelivered_at = $1, attempts_base = attempts, claimed_until = NULL
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
