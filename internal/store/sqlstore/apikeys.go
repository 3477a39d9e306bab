package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
)

// CreateAPIKey implements store.Store.
func (s *Store) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_keys (id, key_hash, prefix, name, tenant_id, is_admin, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, k.ID.String(), k.Hash, k.Prefix, k.Name, k.TenantID, k.Admin, dbTime(k.CreatedAt))
	if err != nil {
		return fmt.Errorf("storing api key: %w", err)
	}
	return nil
}

// LookupAPIKey implements store.Store.
func (s *Store) LookupAPIKey(ctx context.Context, hash string) (*store.APIKey, error) {
	var (
		k  store.APIKey
		id string
	)
	err := s.r.QueryRowContext(ctx, `SELECT id, key_hash, prefix, name, tenant_id, is_admin, created_at
		FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, hash).
		Scan(&id, &k.Hash, &k.Prefix, &k.Name, &k.TenantID, &k.Admin, &k.CreatedAt)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("looking up api key: %w", err)
	}
	if k.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("api key id: %w", err)
	}
	k.CreatedAt = k.CreatedAt.UTC()
	return &k, nil
}

// CountAPIKeys implements store.Store.
func (s *Store) CountAPIKeys(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting api keys: %w", err)
	}
	return n, nil
}
