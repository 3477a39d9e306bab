package sqlstore_test

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3/lock"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store/sqlstore"
	"github.com/computeserver/compute/internal/testutil/logbuf"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

func TestMigrationLockID(t *testing.T) {
	t.Parallel()
	if got := sqlstore.MigrationLockID("public"); got != lock.DefaultLockID {
		t.Errorf("public schema: lock %d, want goose's default %d (what earlier versions take)", got, lock.DefaultLockID)
	}
	a, b := sqlstore.MigrationLockID("t_a"), sqlstore.MigrationLockID("t_b")
	if a == b || a == lock.DefaultLockID || a < 0 || a != sqlstore.MigrationLockID("t_a") {
		t.Errorf("schema locks t_a=%d t_b=%d: want distinct, stable, non-negative, not the default", a, b)
	}
}

// TestMigrationLockWaitIsLogged: a migration that finds another session
// holding its schema's migration lock says so, waits, and says when it got
// the lock; it does not fail.
func TestMigrationLockWaitIsLogged(t *testing.T) {
	t.Parallel()
	url := testdb.URL(t, "postgres")
	ctx := context.Background()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	var schema string
	if err := holder.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	id := sqlstore.MigrationLockID(schema)
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, id); err != nil {
		t.Fatal(err)
	}

	var logs logbuf.Buffer
	st, err := sqlstore.Open(ctx, url, registry.New(), logs.Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := make(chan error, 1)
	go func() { done <- st.Migrate(ctx) }()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "waiting for the migration lock"); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("Migrate returned (%v) while another session held the lock", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wait logged:\n%s", logs.String())
		}
	}
	if _, err := holder.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, id); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Migrate after the lock was released: %v", err)
	}
	if out := logs.String(); !strings.Contains(out, "got the migration lock") || !strings.Contains(out, "schema="+schema) {
		t.Errorf("logs lack the end of the wait:\n%s", out)
	}
}
