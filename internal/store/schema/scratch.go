package schema

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

// OpenScratch opens an empty database for a one-off check, such as
// comparing what the migrations build with the models (`compute migrate
// diff`): with dsn "" a SQLite file in a new temporary directory, with a
// postgres:// dsn a new schema on that server. Close the store, then call
// drop to delete the database.
func OpenScratch(ctx context.Context, dsn string, reg *registry.Registry, log *slog.Logger) (st *sqlstore.Store, drop func(context.Context) error, err error) {
	if dsn == "" {
		dir, err := os.MkdirTemp("", "compute-scratch-")
		if err != nil {
			return nil, nil, err
		}
		st, err := sqlstore.Open(ctx, filepath.Join(dir, "scratch.db"), reg, log)
		if err != nil {
			return nil, nil, errors.Join(err, os.RemoveAll(dir))
		}
		return st, func(context.Context) error { return os.RemoveAll(dir) }, nil
	}
	if !sqlstore.IsPostgresURL(dsn) {
		return nil, nil, fmt.Errorf("a scratch database needs a postgres:// URL or nothing (SQLite), not %q", dsn)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the PostgreSQL URL: %w", err)
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("opening postgres: %w", err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "compute_scratch_" + hex.EncodeToString(b)
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		return nil, nil, fmt.Errorf("creating scratch schema: %w", err)
	}
	drop = func(ctx context.Context) error {
		_, err := admin.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE")
		return errors.Join(err, admin.Close())
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	if st, err = sqlstore.Open(ctx, u.String(), reg, log); err != nil {
		return nil, nil, errors.Join(err, drop(ctx))
	}
	return st, drop, nil
}
