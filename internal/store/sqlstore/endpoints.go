package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// endpointColumns are the columns scanEndpoint reads, in its order.
const endpointColumns = `id, tenant_id, url, destination, description, filter, enabled, secret, previous_secret,
previous_until, created_at, updated_at`

func scanEndpoint(r rowScanner) (*store.Endpoint, error) {
	var (
		ep       store.Endpoint
		id, filt string
		prevTill sql.NullTime
	)
	if err := r.Scan(&id, &ep.TenantID, &ep.URL, &ep.Destination, &ep.Description, &filt, &ep.Enabled, &ep.Secret,
		&ep.PreviousSecret, &prevTill, &ep.CreatedAt, &ep.UpdatedAt); err != nil {
		return nil, err
	}
	var err error
	if ep.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("webhook endpoint id %q: %w", id, err)
	}
	if err := json.Unmarshal([]byte(filt), &ep.Filter); err != nil {
		return nil, fmt.Errorf("webhook endpoint %s filter: %w", ep.ID, err)
	}
	ep.CreatedAt, ep.UpdatedAt, ep.PreviousUntil = ep.CreatedAt.UTC(), ep.UpdatedAt.UTC(), timePtr(prevTill)
	return &ep, nil
}

// endpointScope is the condition (on webhook_endpoints, no alias) that
// keeps the endpoints in scope.
func endpointScope(p *params, scope store.Scope) string {
	if scope.Admin {
		return "1 = 1"
	}
	// A key without a tenant sees no endpoint: tenant_id '' is an
	// admin's endpoint for every tenant.
	return "tenant_id <> '' AND tenant_id = " + p.add(scope.TenantID)
}

// CreateEndpoint implements store.Store.
func (s *Store) CreateEndpoint(ctx context.Context, ep *store.Endpoint) error {
	filt, err := json.Marshal(ep.Filter)
	if err != nil {
		return fmt.Errorf("encoding webhook endpoint filter: %w", err)
	}
	ep.CreatedAt = dbTime(ep.CreatedAt)
	ep.UpdatedAt = ep.CreatedAt
	_, err = s.w.ExecContext(ctx, `INSERT INTO webhook_endpoints (id, tenant_id, url, destination, description, filter, enabled,
		secret, previous_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '', $9, $9)`,
		ep.ID.String(), ep.TenantID, ep.URL, ep.Destination, ep.Description, string(filt), ep.Enabled, ep.Secret, ep.CreatedAt)
	if err != nil {
		return fmt.Errorf("storing webhook endpoint: %w", classify(err))
	}
	return nil
}

// GetEndpoint implements store.Store.
func (s *Store) GetEndpoint(ctx context.Context, id uuid.UUID, scope store.Scope) (*store.Endpoint, error) {
	return s.getEndpoint(ctx, s.r, id, scope)
}

func (s *Store) getEndpoint(ctx context.Context, q querier, id uuid.UUID, scope store.Scope) (*store.Endpoint, error) {
	var p params
	where := "id = " + p.add(id.String()) + " AND " + endpointScope(&p, scope)
	ep, err := scanEndpoint(q.QueryRowContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE `+where, p.vals...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrEndpointNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading webhook endpoint: %w", err)
	}
	return ep, nil
}

// ListEndpoints implements store.Store.
func (s *Store) ListEndpoints(ctx context.Context, scope store.Scope) ([]store.Endpoint, error) {
	var p params
	return s.loadEndpoints(ctx, s.r, endpointScope(&p, scope), p.vals...)
}

// loadEndpoints reads the endpoints matching where, oldest first.
func (s *Store) loadEndpoints(ctx context.Context, q querier, where string, args ...any) ([]store.Endpoint, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE `+where+` ORDER BY created_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("listing webhook endpoints: %w", err)
	}
	defer rows.Close()
	out := []store.Endpoint{}
	for rows.Next() {
		ep, err := scanEndpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("listing webhook endpoints: %w", err)
		}
		out = append(out, *ep)
	}
	return out, rows.Err()
}

// UpdateEndpoint implements store.Store.
func (s *Store) UpdateEndpoint(ctx context.Context, id uuid.UUID, scope store.Scope, pt store.EndpointPatch) (*store.Endpoint, error) {
	var p params
	sets := []string{"updated_at = " + p.add(dbTime(task.Now()))}
	if pt.URL != nil {
		sets = append(sets, "url = "+p.add(*pt.URL))
	}
	if pt.Destination != nil {
		sets = append(sets, "destination = "+p.add(*pt.Destination))
	}
	if pt.Description != nil {
		sets = append(sets, "description = "+p.add(*pt.Description))
	}
	if pt.Filter != nil {
		filt, err := json.Marshal(*pt.Filter)
		if err != nil {
			return nil, fmt.Errorf("encoding webhook endpoint filter: %w", err)
		}
		sets = append(sets, "filter = "+p.add(string(filt)))
	}
	if pt.Enabled != nil {
		sets = append(sets, "enabled = "+p.add(*pt.Enabled))
	}
	return s.writeEndpoint(ctx, id, scope, sets, &p)
}

// writeEndpoint applies sets (bound in p) to the endpoint in scope and
// reads it back, in one transaction.
func (s *Store) writeEndpoint(ctx context.Context, id uuid.UUID, scope store.Scope, sets []string, p *params) (*store.Endpoint, error) {
	where := "id = " + p.add(id.String()) + " AND " + endpointScope(p, scope)
	var out *store.Endpoint
	err := s.inTx(ctx, func(tx *txn) error {
		res, err := tx.ExecContext(ctx, `UPDATE webhook_endpoints SET `+strings.Join(sets, ", ")+` WHERE `+where, p.vals...)
		if err != nil {
			return fmt.Errorf("updating webhook endpoint: %w", classify(err))
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("updating webhook endpoint: %w", err)
		} else if n == 0 {
			return store.ErrEndpointNotFound
		}
		out, err = s.getEndpoint(ctx, tx, id, store.AdminScope)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RotateEndpointSecret implements store.Store.
func (s *Store) RotateEndpointSecret(ctx context.Context, id uuid.UUID, scope store.Scope, secret string, overlapUntil time.Time) (*store.Endpoint, error) {
	var p params
	now := dbTime(task.Now())
	sets := []string{"updated_at = " + p.add(now), "secret = " + p.add(secret)}
	if overlapUntil.After(now) {
		sets = append(sets, "previous_secret = secret", "previous_until = "+p.add(dbTime(overlapUntil)))
	} else {
		sets = append(sets, "previous_secret = ''", "previous_until = NULL")
	}
	return s.writeEndpoint(ctx, id, scope, sets, &p)
}

// DeleteEndpoint implements store.Store.
func (s *Store) DeleteEndpoint(ctx context.Context, id uuid.UUID, scope store.Scope) error {
	now := task.Now()
	return s.inTx(ctx, func(tx *txn) error {
		var p params
		where := "id = " + p.add(id.String()) + " AND " + endpointScope(&p, scope)
		res, err := tx.ExecContext(ctx, `DELETE FROM webhook_endpoints WHERE `+where, p.vals...)
		if err != nil {
			return fmt.Errorf("deleting webhook endpoint: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return fmt.Errorf("deleting webhook endpoint: %w", err)
		} else if n == 0 {
			return store.ErrEndpointNotFound
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = 'stopped', last_error = 'not sent: its webhook endpoint was deleted',
				updated_at = $1, claimed_until = NULL WHERE endpoint_id = $2 AND status = 'pending'`, now, id.String()); err != nil {
			return fmt.Errorf("stopping a deleted webhook endpoint's deliveries: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET endpoint_id = NULL WHERE endpoint_id = $1`, id.String()); err != nil {
			return fmt.Errorf("detaching a deleted webhook endpoint's deliveries: %w", err)
		}
		return nil
	})
}

// endpointTargets returns the deliveries the enabled endpoints want for
// evs: target i of evs[j] is out[j][i]. It reads the endpoints in the
// events' transaction, so an event and its endpoints' deliveries commit
// together.
func (s *Store) endpointTargets(ctx context.Context, tx *txn, evs []event.Event) ([][]endpointTarget, error) {
	eps, err := s.loadEndpoints(ctx, tx, "enabled = $1", true)
	if err != nil || len(eps) == 0 {
		return nil, err
	}
	out := make([][]endpointTarget, len(evs))
	for j, e := range evs {
		for i := range eps {
			if eps[i].Receives(e.TenantID) && eps[i].Filter.Matches(e) {
				out[j] = append(out[j], endpointTarget{id: eps[i].ID.String(), url: eps[i].URL, destination: eps[i].Destination})
			}
		}
	}
	return out, nil
}

// endpointTarget is one endpoint's delivery of an event.
type endpointTarget struct {
	id, url, destination string
}

// loadSecrets sets the signing secrets of the deliveries made for
// endpoints, as of now.
func (s *Store) loadSecrets(ctx context.Context, q querier, ds []store.Delivery, now time.Time) error {
	var (
		p   params
		ids []any
	)
	for _, d := range ds {
		if d.EndpointID != uuid.Nil {
			ids = append(ids, d.EndpointID.String())
		}
	}
	if len(ids) == 0 {
		return nil
	}
	eps, err := s.loadEndpoints(ctx, q, "id IN ("+p.list(ids...)+")", p.vals...)
	if err != nil {
		return err
	}
	byID := make(map[uuid.UUID]*store.Endpoint, len(eps))
	for i := range eps {
		byID[eps[i].ID] = &eps[i]
	}
	for i := range ds {
		if ep := byID[ds[i].EndpointID]; ep != nil {
			ds[i].Secrets = ep.Secrets(now)
		}
	}
	return nil
}
