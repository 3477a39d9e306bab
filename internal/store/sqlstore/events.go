package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// eventOrderLock is the advisory lock that makes PostgreSQL event ids
// follow commit order: a transaction takes it as it inserts its events
// (insertEventsSQL) and holds it until it commits, so no transaction can commit an
// event with a smaller id after a reader has seen a larger one. Readers of
// the log (SSE replay, relays) can then resume from an id without gaps.
// Every writer takes its row locks before this lock, never after, so the
// lock cannot take part in a deadlock. SQLite's single writer gives the
// same order by itself.
const eventOrderLock = 0x636f6d7075746531 // "compute1"

// eventCols are the columns of an event batch.
var eventCols = []batchCol{
	{"task_id", "uuid"}, {"task_type", "text"}, {"event_type", "text"}, {"status", "text"},
	{"tenant_id", "text"}, {"body", "json"}, {"created_at", "timestamptz"},
}

// eventRow is one event in an event batch; its JSON names are eventCols.
type eventRow struct {
	TaskID    string `json:"task_id"`
	TaskType  string `json:"task_type"`
	EventType string `json:"event_type"`
	Status    string `json:"status"`
	TenantID  string `json:"tenant_id"`
	Body      string `json:"body"`
	CreatedAt string `json:"created_at"`
}

// newEventRow is e as both dialects write it (the order of eventCols).
func newEventRow(e event.Event) eventRow {
	return eventRow{TaskID: e.TaskID.String(), TaskType: e.TaskType, EventType: e.EventType,
		Status: string(e.Status), TenantID: e.TenantID, Body: string(e.Body), CreatedAt: batchTime(e.CreatedAt)}
}

// insertEventsSQL is the INSERT of writeEvents for dialect d: on
// PostgreSQL one statement per batch, passed as JSON in $1; on SQLite one
// prepared statement run per event (see changeSQL).
func insertEventsSQL(d dialect) string {
	names, vals := make([]string, len(eventCols)), make([]string, len(eventCols))
	for i, c := range eventCols {
		names[i], vals[i] = c.name, d.batchValue(c)
	}
	if !d.jsonBatches {
		return `INSERT INTO task_events (` + strings.Join(names, ", ") + `) VALUES (` +
			strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ") + `)`
	}
	// The event-order lock and the events' NOTIFY ride on the INSERT: the
	// uncorrelated EXISTS is an InitPlan behind a one-time filter, run
	// once before the first row reaches the insert and so before any id
	// is drawn. That saves the lock-holder two round trips.
	return `INSERT INTO task_events (` + strings.Join(names, ", ") + `)
		SELECT ` + strings.Join(vals, ", ") + ` FROM ` + d.jsonRows("$1", eventCols) + `
		WHERE EXISTS (SELECT 1 FROM pg_advisory_xact_lock($2), pg_notify($3, $4))
		RETURNING id, task_id`
}

// writeEvents inserts a chunk of events and returns their ids by task id.
func (s *Store) writeEvents(ctx context.Context, tx *txn, chunk []event.Event) (map[string]int64, error) {
	if s.d.jsonBatches {
		return s.writeEventsBatch(ctx, tx, chunk)
	}
	return s.writeEventsEach(ctx, tx, chunk)
}

// writeEventsEach runs the prepared INSERT once per event (SQLite).
func (s *Store) writeEventsEach(ctx context.Context, tx *txn, chunk []event.Event) (map[string]int64, error) {
	ids := make(map[string]int64, len(chunk))
	st, err := tx.PrepareContext(ctx, s.sql.insertEvents)
	if err != nil {
		return nil, fmt.Errorf("inserting events: %w", err)
	}
	defer st.Close()
	for _, e := range chunk {
		r := newEventRow(e)
		res, err := st.ExecContext(ctx, r.TaskID, r.TaskType, r.EventType, r.Status, r.TenantID, r.Body, r.CreatedAt)
		if err != nil {
			return nil, fmt.Errorf("inserting events: %w", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, fmt.Errorf("inserting events: %w", err)
		}
		ids[e.TaskID.String()] = id
	}
	return ids, nil
}

// writeEventsBatch inserts the chunk in one statement over a JSON array,
// which also takes the event-order lock and sends the NOTIFY (PostgreSQL).
func (s *Store) writeEventsBatch(ctx context.Context, tx *txn, chunk []event.Event) (map[string]int64, error) {
	ids := make(map[string]int64, len(chunk))
	batch := make([]eventRow, len(chunk))
	for i, e := range chunk {
		batch[i] = newEventRow(e)
	}
	param, err := jsonText(batch)
	if err != nil {
		return nil, err
	}
	note := store.Notification{Kind: store.NotifyEvents}
	r, err := tx.QueryContext(ctx, s.sql.insertEvents, param, int64(eventOrderLock), s.channel, encodeNote(note))
	if err != nil {
		return nil, fmt.Errorf("inserting events: %w", err)
	}
	defer r.Close()
	for r.Next() {
		var (
			id  int64
			tid string
		)
		if err := r.Scan(&id, &tid); err != nil {
			return nil, fmt.Errorf("inserting events: %w", err)
		}
		ids[normalizeUUID(tid)] = id
	}
	if err := r.Err(); err != nil {
		return nil, fmt.Errorf("inserting events: %w", err)
	}
	tx.sent(note)
	return ids, nil
}

// insertEvents writes events (at most one per task per call), on
// PostgreSQL one INSERT per chunk, on SQLite one prepared INSERT per event, their webhook deliveries beside them, and remembers
// them for announcement after the commit. It returns them with their ids.
func (s *Store) insertEvents(ctx context.Context, tx *txn, evs []event.Event) ([]event.Event, error) {
	if len(evs) == 0 {
		return evs, nil
	}
	for start := 0; start < len(evs); start += maxBatch {
		chunk := evs[start:min(start+maxBatch, len(evs))]
		ids, err := s.writeEvents(ctx, tx, chunk)
		if err != nil {
			return nil, err
		}
		if len(ids) != len(chunk) {
			return nil, fmt.Errorf("inserting events: %d events for %d tasks; one event per task per call", len(chunk), len(ids))
		}
		for i := range chunk {
			chunk[i].ID = ids[chunk[i].TaskID.String()]
		}
		if err := s.insertDeliveries(ctx, tx, chunk); err != nil {
			return nil, err
		}
	}
	// Events are announced in id order.
	slices.SortFunc(evs, func(a, b event.Event) int { return int(a.ID - b.ID) })
	tx.events = append(tx.events, evs...)
	return evs, nil
}

// insertDeliveries writes one pending delivery per webhook target of each
// event (WithWebhookTargets decides them) and per enabled webhook endpoint
// whose filter wants it, in the event's transaction: an event is never
// without its deliveries, and a delivery never without its event.
func (s *Store) insertDeliveries(ctx context.Context, tx *txn, evs []event.Event) error {
	eps, err := s.endpointTargets(ctx, tx, evs)
	if err != nil {
		return err
	}
	var (
		rows []string
		p    params
	)
	for j, e := range evs {
		// A workflow's events go to its own webhook_url only, never to
		// the default URL (whose receivers expect task events), and to
		// the endpoints whose filter wants them.
		wf := e.EventType == store.WorkflowEventType
		if s.targets != nil && (!wf || e.WebhookURL != "") {
			for _, tg := range s.targets(e) {
				rows = append(rows, "("+p.list(e.ID, e.TaskID.String(), tg.URL, tg.Destination, dbTime(e.CreatedAt), dbTime(e.CreatedAt), nil)+")")
			}
		}
		if eps != nil {
			for _, tg := range eps[j] {
				rows = append(rows, "("+p.list(e.ID, e.TaskID.String(), tg.url, tg.destination, dbTime(e.CreatedAt), dbTime(e.CreatedAt), tg.id)+")")
			}
		}
	}
	if len(rows) == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (event_id, task_id, url, destination, next_attempt_at, created_at, endpoint_id)
		VALUES `+strings.Join(rows, ", "), p.vals...); err != nil {
		return fmt.Errorf("inserting webhook deliveries: %w", err)
	}
	return nil
}

// ListEvents implements store.Store. It reads from the lists pool, never
// the writers' connections, so replays cannot starve writes.
func (s *Store) ListEvents(ctx context.Context, f store.EventFilter) ([]event.Event, error) {
	q, args := eventsQuery(f)
	rows, err := s.lists.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	defer rows.Close()
	var out []event.Event
	for rows.Next() {
		var (
			e             event.Event
			tid, st, body string
		)
		if err := rows.Scan(&e.ID, &tid, &e.TaskType, &e.EventType, &st, &e.TenantID, &body, &e.CreatedAt); err != nil {
			return nil, fmt.Errorf("listing events: %w", err)
		}
		if e.TaskID, err = uuid.Parse(tid); err != nil {
			return nil, fmt.Errorf("event %d task id: %w", e.ID, err)
		}
		e.Status, e.Body, e.CreatedAt = task.Status(st), json.RawMessage(body), e.CreatedAt.UTC()
		if strings.HasSuffix(e.EventType, "_"+event.KindProgress) {
			e.Kind = event.KindProgress
		} else {
			e.Kind = event.KindStatus
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// eventsQuery is ListEvents' SELECT. Each filter has an index ordered by
// id (migration list_indexes), so a tenant's replay from id 0 reads only
// that tenant's rows.
func eventsQuery(f store.EventFilter) (string, []any) {
	var p params
	conds := []string{"id > " + p.add(f.AfterID)}
	if f.TaskID != uuid.Nil {
		conds = append(conds, "task_id = "+p.add(f.TaskID.String()))
	}
	if !f.Scope.Admin {
		conds = append(conds, "tenant_id = "+p.add(f.Scope.TenantID))
	}
	for _, c := range []string{inList(&p, "task_type", f.TaskTypes), inList(&p, "status", f.Statuses)} {
		if c != "" {
			conds = append(conds, c)
		}
	}
	if f.TenantID != "" && (f.Scope.Admin || f.TenantID != f.Scope.TenantID) {
		conds = append(conds, "tenant_id = "+p.add(f.TenantID))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	return `SELECT id, task_id, task_type, event_type, status, tenant_id, body, created_at
		FROM task_events WHERE ` + strings.Join(conds, " AND ") + ` ORDER BY id LIMIT ` + p.add(limit), p.vals
}

// LastEventID returns the id of the newest committed event (0 when there is
// none). Since ids follow commit order, every event with a smaller id is
// committed too: a reader of the log may start after it without a gap.
func (s *Store) LastEventID(ctx context.Context) (int64, error) {
	var id int64
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM task_events`).Scan(&id); err != nil {
		return 0, fmt.Errorf("reading the last event id: %w", err)
	}
	return id, nil
}
