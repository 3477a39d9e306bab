// Package testdb gives each test its own real database: a temporary SQLite
// file, or a fresh schema on the PostgreSQL server named by
// COMPUTE_TEST_DATABASE_URL (default: the local server's "test" database).
//
// PostgreSQL tests are required when CI=true: an unreachable server fails
// them. Elsewhere they are skipped with a message saying how to run them.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/webhook"
)

// DefaultPostgresURL is used when COMPUTE_TEST_DATABASE_URL is not set.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Dialects are the databases every store test runs against.
var Dialects = []string{"sqlite", "postgres"}

// URL returns a connection string for a new, empty database of the dialect:
// a SQLite file in t.TempDir(), or a postgres:// URL whose search_path is a
// fresh schema that is dropped when the test ends.
func URL(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case "sqlite":
		return filepath.Join(t.TempDir(), "compute.db")
	case "postgres":
		return postgresSchemaURL(t)
	}
	t.Fatalf("testdb: unknown dialect %q", dialect)
	return ""
}

func postgresSchemaURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("COMPUTE_TEST_DATABASE_URL")
	if base == "" {
		base = DefaultPostgresURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", base)
	if err == nil {
		err = db.PingContext(ctx)
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		if os.Getenv("CI") == "true" {
			t.Fatalf("testdb: PostgreSQL is required in CI but unreachable at %s: %v", base, err)
		}
		t.Skipf("testdb: PostgreSQL unreachable at %s (%v); set COMPUTE_TEST_DATABASE_URL or start it to run this test", base, err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "t_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		t.Fatalf("testdb: creating schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Logf("testdb: dropping schema %s: %v", schema, err)
		}
		db.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testdb: parsing %s: %v", base, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open returns a migrated store of the dialect for the registry's types,
// closed when the test ends. It writes webhook deliveries as a server
// does without COMPUTE_WEBHOOK_URL (webhook.Targeting); opts come after,
// so they may change that.
func Open(t testing.TB, dialect string, reg *registry.Registry, opts ...sqlstore.Option) *sqlstore.Store {
	t.Helper()
	ctx := context.Background()
	opts = append([]sqlstore.Option{sqlstore.WithWebhookTargets(webhook.Targeting{}.Targets)}, opts...)
	s, err := sqlstore.Open(ctx, URL(t, dialect), reg, Logger(t), opts...)
	if err != nil {
		t.Fatalf("testdb: opening %s: %v", dialect, err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("testdb: migrating %s: %v", dialect, err)
	}
	return s
}

// Logger returns a logger that writes to the test log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// SQL opens a plain database/sql handle on the database at dsn (from URL),
// closed when the test ends, for tests that seed or inspect rows directly.
func SQL(t testing.TB, dialect, dsn string) *sql.DB {
	t.Helper()
	driver, name := "pgx", dsn
	if dialect == "sqlite" {
		driver, name = "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)"
	}
	db, err := sql.Open(driver, name)
	if err != nil {
		t.Fatalf("testdb: opening %s: %v", dialect, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
