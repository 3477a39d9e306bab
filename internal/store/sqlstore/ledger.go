package sqlstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// Bounds of the ledger's pages and bulk redeliveries.
const (
	defaultDeliveryPage = 50
	maxDeliveryPage     = 500
	maxRedeliver        = 1000
)

// deliveryCursorPrefix starts the text of a delivery list cursor.
const deliveryCursorPrefix = "delivery:"

func encodeDeliveryCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(deliveryCursorPrefix + strconv.FormatInt(id, 10)))
}

func decodeDeliveryCursor(c string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, store.ErrBadCursor
	}
	rest, ok := strings.CutPrefix(string(raw), deliveryCursorPrefix)
	if !ok {
		return 0, store.ErrBadCursor
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrBadCursor
	}
	return id, nil
}

// deliveryConds are the conditions (over aliases d and e) that keep the
// deliveries matching f. A tenant sees the deliveries of its own tasks
// (and workflows) made for their own URL or for the tenant's own
// endpoints, not those of an admin's endpoint that receives every
// tenant's events.
func deliveryConds(p *params, f store.DeliveryFilter) []string {
	conds := []string{"1 = 1"}
	if !f.Scope.Admin {
		t := p.add(f.Scope.TenantID)
		conds = append(conds, tenantOwns("d.task_id", t), tenantEndpoints("d.endpoint_id", t))
	}
	for _, c := range []string{inList(p, "d.status", f.Statuses), inList(p, "e.event_type", f.EventTypes)} {
		if c != "" {
			conds = append(conds, c)
		}
	}
	if f.EndpointID != uuid.Nil {
		conds = append(conds, "d.endpoint_id = "+p.add(f.EndpointID.String()))
	}
	if f.TaskID != uuid.Nil {
		conds = append(conds, "d.task_id = "+p.add(f.TaskID.String()))
	}
	if !f.CreatedAfter.IsZero() {
		conds = append(conds, "d.created_at >= "+p.add(dbTime(f.CreatedAfter)))
	}
	if !f.CreatedBefore.IsZero() {
		conds = append(conds, "d.created_at < "+p.add(dbTime(f.CreatedBefore)))
	}
	if len(f.IDs) > 0 {
		ids := make([]any, len(f.IDs))
		for i, id := range f.IDs {
			ids[i] = id
		}
		conds = append(conds, "d.id IN ("+p.list(ids...)+")")
	}
	return conds
}

// ListDeliveryPage implements store.Store.
func (s *Store) ListDeliveryPage(ctx context.Context, f store.DeliveryFilter) (store.DeliveryPage, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = defaultDeliveryPage
	}
	limit = min(limit, maxDeliveryPage)
	var p params
	conds := deliveryConds(&p, f)
	if f.Cursor != "" {
		before, err := decodeDeliveryCursor(f.Cursor)
		if err != nil {
			return store.DeliveryPage{}, err
		}
		conds = append(conds, "d.id < "+p.add(before))
	}
	rows, err := s.lists.QueryContext(ctx, `SELECT `+deliveryColumns+`
		FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id
		WHERE `+strings.Join(conds, " AND ")+` ORDER BY d.id DESC LIMIT `+p.add(limit+1), p.vals...)
	if err != nil {
		return store.DeliveryPage{}, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	defer rows.Close()
	page := store.DeliveryPage{Deliveries: []store.Delivery{}}
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return store.DeliveryPage{}, fmt.Errorf("listing webhook deliveries: %w", err)
		}
		page.Deliveries = append(page.Deliveries, d)
	}
	if err := rows.Err(); err != nil {
		return store.DeliveryPage{}, fmt.Errorf("listing webhook deliveries: %w", err)
	}
	if len(page.Deliveries) > limit {
		page.Deliveries = page.Deliveries[:limit]
		page.NextCursor = encodeDeliveryCursor(page.Deliveries[limit-1].ID)
	}
	return page, nil
}

// RedeliverMany implements store.Store.
func (s *Store) RedeliverMany(ctx context.Context, f store.DeliveryFilter) ([]int64, error) {
	limit := f.Limit
	if limit <= 0 || limit > maxRedeliver {
		limit = maxRedeliver
	}
	now := dbTime(task.Now())
	var out []int64
	err := s.inTx(ctx, func(tx *txn) error {
		out = out[:0]
		var p params
		nowP := p.add(now)
		conds := deliveryConds(&p, f)
		rows, err := tx.QueryContext(ctx, `UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = `+nowP+`,
			updated_at = `+nowP+`, delivered_at = NULL, redelivered_at = `+nowP+`, attempts_base = attempts, claimed_until = NULL
			WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN task_events e ON e.id = d.event_id
				WHERE `+strings.Join(conds, " AND ")+` ORDER BY d.id LIMIT `+p.add(limit)+`)
			RETURNING id`, p.vals...)
		if err != nil {
			return fmt.Errorf("redelivering webhook deliveries: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("redelivering webhook deliveries: %w", err)
			}
			out = append(out, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("redelivering webhook deliveries: %w", err)
		}
		if len(out) > 0 {
			// Due work: wake the senders of every process.
			tx.notify(store.Notification{Kind: store.NotifyWake})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}
