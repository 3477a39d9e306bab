package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
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

// apiKeyColumns are the columns scanAPIKey reads, in its order.
const apiKeyColumns = `id, key_hash, prefix, name, tenant_id, is_admin, created_at, revoked_at`

func scanAPIKey(r rowScanner) (*store.APIKey, error) {
	var (
		k       store.APIKey
		id      string
		revoked sql.NullTime
	)
	if err := r.Scan(&id, &k.Hash, &k.Prefix, &k.Name, &k.TenantID, &k.Admin, &k.CreatedAt, &revoked); err != nil {
		return nil, err
	}
	var err error
	if k.ID, err = uuid.Parse(id); err != nil {
		return nil, fmt.Errorf("api key id: %w", err)
	}
	k.CreatedAt, k.RevokedAt = k.CreatedAt.UTC(), timePtr(revoked)
	return &k, nil
}

// LookupAPIKey implements store.Store.
func (s *Store) LookupAPIKey(ctx context.Context, hash string) (*store.APIKey, error) {
	k, err := scanAPIKey(s.r.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE key_hash = $1`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("looking up api key: %w", err)
	}
	if k.RevokedAt != nil {
		return nil, store.ErrKeyRevoked
	}
	return k, nil
}

// CountAPIKeys implements store.Store.
func (s *Store) CountAPIKeys(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_keys WHERE revoked_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting api keys: %w", err)
	}
	return n, nil
}

// ListAPIKeys implements store.Store.
func (s *Store) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	defer rows.Close()
	out := []store.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("listing api keys: %w", err)
		}
		out = append(out, *k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey implements store.Store. The first revocation's time is
// kept.
func (s *Store) RevokeAPIKey(ctx context.Context, id uuid.UUID) (*store.APIKey, error) {
	if _, err := s.w.ExecContext(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL`,
		id.String(), dbTime(task.Now())); err != nil {
		return nil, fmt.Errorf("revoking api key: %w", err)
	}
	// Read from the writer: the read pool may not see the update yet.
	k, err := scanAPIKey(s.w.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = $1`, id.String()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, store.ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("revoking api key: %w", err)
	}
	return k, nil
}
