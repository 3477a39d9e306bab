package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver
)

// Database kinds the benchmark runs on.
const (
	dbSQLite   = "sqlite"
	dbPostgres = "postgres"
)

// dbEnv hands out fresh databases: a new SQLite file under dir, or a new
// schema on the PostgreSQL server at pgURL, each dropped by its cleanup.
type dbEnv struct {
	dir   string
	pgURL string
	// keep leaves the databases behind for inspection.
	keep bool
}

// freshDB is one empty database for one system under test.
type freshDB struct {
	kind string
	// dsn is what sqlstore.Open takes: a file path, or a postgres URL
	// whose search_path is schema.
	dsn string
	// path is the SQLite file; schema the PostgreSQL schema.
	path, schema string
	cleanup      func()
}

// fresh returns a new empty database of kind for the system named label.
func (e *dbEnv) fresh(ctx context.Context, kind, label string) (*freshDB, error) {
	suffix := randomHex(4)
	switch kind {
	case dbSQLite:
		dir := filepath.Join(e.dir, label+"-"+suffix)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "bench.db")
		f := &freshDB{kind: kind, dsn: path, path: path, cleanup: func() { _ = os.RemoveAll(dir) }}
		if e.keep {
			f.cleanup = func() {}
		}
		return f, nil
	case dbPostgres:
		schema := "bench_" + label + "_" + suffix
		db, err := sql.Open("pgx", e.pgURL)
		if err != nil {
			return nil, err
		}
		if _, err := db.ExecContext(ctx, `CREATE SCHEMA `+schema); err != nil {
			db.Close()
			return nil, fmt.Errorf("creating schema %s: %w", schema, err)
		}
		u, err := url.Parse(e.pgURL)
		if err != nil {
			db.Close()
			return nil, err
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		f := &freshDB{kind: kind, dsn: u.String(), schema: schema, cleanup: func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, _ = db.ExecContext(ctx, `DROP SCHEMA `+schema+` CASCADE`)
			db.Close()
		}}
		if e.keep {
			f.cleanup = func() { db.Close() }
		}
		return f, nil
	}
	return nil, fmt.Errorf("unknown database kind %q", kind)
}

// openSQL opens a plain database/sql handle on the fresh database, for
// checks the systems under test do not offer.
func (f *freshDB) openSQL() (*sql.DB, error) {
	if f.kind == dbPostgres {
		return sql.Open("pgx", f.dsn)
	}
	return sql.Open("sqlite", sqliteDSN(f.path))
}

// sqliteDSN is the modernc DSN River is given and the checks use: the same
// pragmas as the compute store's writer (WAL, synchronous=NORMAL, a busy
// timeout, foreign keys, immediate write transactions).
func sqliteDSN(path string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_time_format", "sqlite")
	q.Set("_txlock", "immediate")
	return "file:" + path + "?" + q.Encode()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// countWhere runs a SELECT COUNT(*) query and returns the count.
func countWhere(ctx context.Context, db *sql.DB, query string, args ...any) (int, error) {
	var n int
	err := db.QueryRowContext(ctx, query, args...).Scan(&n)
	return n, err
}
