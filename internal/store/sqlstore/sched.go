package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

var _ store.Scheduling = (*Store)(nil)

// SetTenantLimit implements store.Scheduling.
func (s *Store) SetTenantLimit(ctx context.Context, tenant string, n int) error {
	var err error
	if n <= 0 {
		_, err = s.w.ExecContext(ctx, `DELETE FROM tenant_limits WHERE tenant_id = $1`, tenant)
	} else {
		_, err = s.w.ExecContext(ctx, `INSERT INTO tenant_limits (tenant_id, max_concurrency, updated_at) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id) DO UPDATE SET max_concurrency = excluded.max_concurrency, updated_at = excluded.updated_at`,
			tenant, n, task.Now())
	}
	if err != nil {
		return fmt.Errorf("setting the limit of tenant %q: %w", tenant, classify(err))
	}
	s.limitsMu.Lock()
	s.tenantLimitsAt = time.Time{}
	s.limitsMu.Unlock()
	return nil
}

// TenantLimits implements store.Scheduling.
func (s *Store) TenantLimits(ctx context.Context) (map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT tenant_id, max_concurrency FROM tenant_limits`)
	if err != nil {
		return nil, fmt.Errorf("reading tenant limits: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			t string
			n int
		)
		if err := rows.Scan(&t, &n); err != nil {
			return nil, fmt.Errorf("reading tenant limits: %w", err)
		}
		out[t] = n
	}
	return out, rows.Err()
}

// cachedTenantLimits is TenantLimits, trusted for queueLimitTTL like the
// queue limits: a change reaches the other processes' claims within it.
func (s *Store) cachedTenantLimits(ctx context.Context) (map[string]int, error) {
	s.limitsMu.Lock()
	defer s.limitsMu.Unlock()
	if time.Since(s.tenantLimitsAt) < queueLimitTTL {
		return s.tenantLimits, nil
	}
	l, err := s.TenantLimits(ctx)
	if err != nil {
		return nil, err
	}
	s.tenantLimits, s.tenantLimitsAt = l, time.Now()
	return l, nil
}

// Hold implements store.Scheduling.
func (s *Store) Hold(ctx context.Context, h store.Hold) error {
	if !h.Kind.Valid() || h.Name == "" {
		return fmt.Errorf("holding %s %q: not a queue, executor or server with a name", h.Kind, h.Name)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO scheduling_holds (kind, name, reason, held_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind, name) DO UPDATE SET reason = excluded.reason`, string(h.Kind), h.Name, h.Reason, task.Now())
	if err != nil {
		return fmt.Errorf("holding %s %q: %w", h.Kind, h.Name, classify(err))
	}
	s.forgetServerHolds()
	return nil
}

// Release implements store.Scheduling.
func (s *Store) Release(ctx context.Context, kind store.HoldKind, name string) (bool, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM scheduling_holds WHERE kind = $1 AND name = $2`, string(kind), name)
	if err != nil {
		return false, fmt.Errorf("releasing %s %q: %w", kind, name, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("releasing %s %q: %w", kind, name, err)
	}
	s.forgetServerHolds()
	return n > 0, nil
}

// Holds implements store.Scheduling.
func (s *Store) Holds(ctx context.Context) ([]store.Hold, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT kind, name, reason, held_at FROM scheduling_holds ORDER BY kind, name`)
	if err != nil {
		return nil, fmt.Errorf("reading holds: %w", err)
	}
	defer rows.Close()
	out := []store.Hold{}
	for rows.Next() {
		var (
			h     store.Hold
			kind  string
			since sql.NullTime
		)
		if err := rows.Scan(&kind, &h.Name, &h.Reason, &since); err != nil {
			return nil, fmt.Errorf("reading holds: %w", err)
		}
		h.Kind, h.Since = store.HoldKind(kind), since.Time.UTC()
		out = append(out, h)
	}
	return out, rows.Err()
}

// notHeld is the claim's condition that a task's queue and executor are
// not held (store.Scheduling).
const notHeld = ` AND queue_name NOT IN (SELECT name FROM scheduling_holds WHERE kind = 'queue')
	AND provider_type NOT IN (SELECT name FROM scheduling_holds WHERE kind = 'executor')`

// heldServerTTL is how long TakeSlot trusts its copy of the drained
// servers: a drain reaches the other processes within it.
const heldServerTTL = time.Second

// forgetServerHolds makes the next TakeSlot read the drained servers.
func (s *Store) forgetServerHolds() {
	s.holdsMu.Lock()
	s.serversAt = time.Time{}
	s.holdsMu.Unlock()
}

// heldServers returns the URLs of the drained executor servers.
func (s *Store) heldServers(ctx context.Context) (map[string]bool, error) {
	s.holdsMu.Lock()
	defer s.holdsMu.Unlock()
	if time.Since(s.serversAt) < heldServerTTL {
		return s.servers, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM scheduling_holds WHERE kind = 'server'`)
	if err != nil {
		return nil, fmt.Errorf("reading drained servers: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var url string
		if err := rows.Scan(&url); err != nil {
			return nil, fmt.Errorf("reading drained servers: %w", err)
		}
		out[url] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading drained servers: %w", err)
	}
	s.servers, s.serversAt = out, time.Now()
	return out, nil
}
