package main

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFailedBindMakesNoKey: a first start whose port is taken fails before
// it generates the one-time admin key, so the key is not lost; the next
// start that binds generates it.
func TestFailedBindMakesNoKey(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COMPUTE_DATA_DIR", dir)
	t.Setenv("COMPUTE_API_KEY", "")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	t.Setenv("COMPUTE_ADDR", busy.Addr().String())
	_, err = run(t, context.Background(), "serve")
	if err == nil || !strings.Contains(err.Error(), "listening on "+busy.Addr().String()) {
		t.Fatalf("serve on a taken port: err = %v, want a listen error", err)
	}
	// No database was made, so no key either.
	out, err := run(t, context.Background(), "apikey", "list")
	if err == nil || !strings.Contains(err.Error(), "no SQLite database") {
		t.Fatalf("after a failed bind, apikey list: %v\n%s\nwant no database (no key generated and its log line lost)", err, out)
	}
}

// TestAPIKeyListAndRevoke lists keys (never the keys themselves), revokes
// one by id and one by the key, and checks that a revoked key named by
// COMPUTE_API_KEY stays revoked at the next start, which, left with no
// active key, generates one.
func TestAPIKeyListAndRevoke(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COMPUTE_DATA_DIR", dir)
	ctx := context.Background()
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(t, ctx, args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out
	}
	mustRun("migrate", "up")
	admin := strings.TrimSpace(mustRun("apikey", "create", "--name", "ops"))
	tenant := strings.TrimSpace(mustRun("apikey", "create", "--tenant", "acme"))
	list := mustRun("apikey", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 {
		t.Fatalf("list:\n%s\nwant a header and 2 keys", list)
	}
	if strings.Contains(list, admin) || strings.Contains(list, tenant) {
		t.Fatalf("list shows a whole key:\n%s", list)
	}
	for _, want := range []string{"admin", "tenant:acme", "ops", admin[:10], tenant[:10]} {
		if !strings.Contains(list, want) {
			t.Errorf("list lacks %q:\n%s", want, list)
		}
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[len(f)-1] != "-" {
			t.Errorf("an active key shows a revocation time: %q", l)
		}
	}
	tenantID := strings.Fields(lines[2])[0]

	// By id, then by the key itself; revoking twice is not an error.
	if out := mustRun("apikey", "revoke", tenantID); !strings.Contains(out, "revoked "+tenantID) {
		t.Errorf("revoke by id: %q", out)
	}
	mustRun("apikey", "revoke", tenantID)
	if out := mustRun("apikey", "revoke", admin); !strings.Contains(out, "revoked ") {
		t.Errorf("revoke by key: %q", out)
	}
	if _, err := run(t, ctx, "apikey", "revoke", "csk_not-a-key-of-ours"); err == nil {
		t.Error("revoking an unknown key succeeded")
	}
	list = mustRun("apikey", "list")
	lines = strings.Split(strings.TrimSpace(list), "\n")
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(lines) != 3 || f[len(f)-1] == "-" {
			t.Fatalf("after revoking both keys:\n%s", list)
		}
	}

	// The next start names the revoked admin key: it stays revoked.
	t.Setenv("COMPUTE_API_KEY", admin)
	addr := freeAddr(t)
	t.Setenv("COMPUTE_ADDR", addr)
	base := startServe(t, addr)
	if code, body := callAPI(t, base, admin, "GET", "/api/v1/tasks/", ""); code != 401 {
		t.Errorf("the revoked COMPUTE_API_KEY got %d %s, want 401", code, body)
	}
	if code, body := callAPI(t, base, tenant, "GET", "/api/v1/tasks/", ""); code != 401 {
		t.Errorf("the revoked tenant key got %d %s, want 401", code, body)
	}
	// With no active key left, the start generated one (and logged it).
	after := mustRun("apikey", "list")
	afterLines := strings.Split(strings.TrimSpace(after), "\n")
	if len(afterLines) != len(lines)+1 || !strings.Contains(after, "no active key") ||
		strings.Fields(afterLines[1])[0] != strings.Fields(lines[1])[0] || strings.Fields(afterLines[2])[0] != tenantID {
		t.Errorf("the start did not add exactly one generated key to the revoked ones:\nbefore\n%s\nafter\n%s", list, after)
	}
}

// TestServerFlagsOnlyWhereTheyApply: --addr and --workers belong to the
// roles that listen and run tasks, --data-dir and --database-url to the
// commands that open the database, and each flag's help shows one default.
func TestServerFlagsOnlyWhereTheyApply(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		args       []string
		want, deny []string
	}{
		{name: "serve", args: []string{"serve", "--help"}, want: []string{"--addr", "--workers", "--data-dir"}},
		{name: "api", args: []string{"api", "--help"}, want: []string{"--addr", "--data-dir"}, deny: []string{"--workers"}},
		{name: "worker", args: []string{"worker", "--help"}, want: []string{"--workers", "--data-dir"}, deny: []string{"--addr"}},
		{name: "apikey", args: []string{"apikey", "--help"}, want: []string{"--data-dir"}, deny: []string{"--addr", "--workers"}},
		{name: "apikey create", args: []string{"apikey", "create", "--help"}, deny: []string{"--addr", "--workers"}},
		{name: "migrate", args: []string{"migrate", "--help"}, want: []string{"--database-url"}, deny: []string{"--addr", "--workers"}},
		{name: "migrate up", args: []string{"migrate", "up", "--help"}, want: []string{"--data-dir"}, deny: []string{"--addr", "--workers"}},
		{name: "openapi", args: []string{"openapi", "--help"}, deny: []string{"--data-dir", "--database-url", "--addr", "--workers"}},
		{name: "new-task-type", args: []string{"new-task-type", "--help"}, deny: []string{"--data-dir", "--database-url", "--addr", "--workers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := run(t, ctx, tt.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("help lacks %s:\n%s", w, out)
				}
			}
			for _, d := range tt.deny {
				if strings.Contains(out, d) {
					t.Errorf("help shows %s:\n%s", d, out)
				}
			}
			for _, l := range strings.Split(out, "\n") {
				if n := strings.Count(l, "default"); n > 1 {
					t.Errorf("a flag shows %d defaults: %q", n, l)
				}
				if strings.Contains(l, "--workers") && !strings.HasSuffix(l, "(default 8)") {
					t.Errorf("--workers help: %q, want its one default, 8", l)
				}
			}
		})
	}
}

// TestFlagsOverrideTheEnvironment: a flag given on the command line wins,
// an absent one leaves the environment's value.
func TestFlagsOverrideTheEnvironment(t *testing.T) {
	t.Setenv("COMPUTE_DATA_DIR", t.TempDir())
	t.Setenv("COMPUTE_WORKERS", "0")
	// The worker role refuses COMPUTE_WORKERS=0 …
	if _, err := run(t, context.Background(), "worker"); err == nil || !strings.Contains(err.Error(), "COMPUTE_WORKERS is 0") {
		t.Fatalf("worker with COMPUTE_WORKERS=0: %v", err)
	}
	// … and --workers overrides it: the next error is about the port.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := run(t, context.Background(), "serve", "--workers", "2", "--addr", busy.Addr().String()); err == nil ||
		!strings.Contains(err.Error(), "listening on "+busy.Addr().String()) {
		t.Fatalf("serve --workers 2 --addr <taken>: %v, want the listen error", err)
	}
}

// TestAPIKeyCreateRefusesBadTenant: `--tenant ""` (a script's unset
// $TENANT) used to make an admin key; an empty, blank or otherwise bad
// tenant is refused with the rule, and no key is made.
func TestAPIKeyCreateRefusesBadTenant(t *testing.T) {
	t.Setenv("COMPUTE_DATA_DIR", t.TempDir())
	ctx := context.Background()
	if _, err := run(t, ctx, "migrate", "up"); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, tenant, want string }{
		{name: "empty", tenant: "", want: "leave --tenant out"},
		{name: "blank", tenant: "  ", want: "blank"},
		{name: "trailing space", tenant: "acme ", want: "white space"},
		{name: "control character", tenant: "ac\tme", want: "control characters"},
		{name: "too long", tenant: strings.Repeat("a", 257), want: "at most 256"},
	}
	for _, tt := range tests {
		out, err := run(t, ctx, "apikey", "create", "--tenant", tt.tenant)
		if err == nil || !strings.Contains(err.Error(), "--tenant") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: create --tenant %q: out %q, err %v; want an error naming --tenant and saying %q", tt.name, tt.tenant, out, err, tt.want)
		}
	}
	out, err := run(t, ctx, "apikey", "list")
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 {
		t.Errorf("refused creates made keys:\n%s", out)
	}
}

// TestCommandsRefuseAMissingDatabase: run where the server's SQLite
// database is not (a wrong directory, an unset COMPUTE_DATA_DIR), apikey
// and migrate status used to create a new, empty database and print a key
// the server rejects. They refuse, naming the path and the settings; only
// migrate up creates the database.
func TestCommandsRefuseAMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COMPUTE_DATA_DIR", dir)
	ctx := context.Background()
	db := filepath.Join(dir, "compute.db")
	for _, args := range [][]string{
		{"apikey", "create"}, {"apikey", "create", "--tenant", "acme"}, {"apikey", "list"},
		{"apikey", "revoke", "csk_some-key-of-the-server"}, {"migrate", "status"},
	} {
		out, err := run(t, ctx, args...)
		if err == nil || out != "" {
			t.Errorf("%v without a database: out %q, err %v; want a refusal", args, out, err)
			continue
		}
		for _, want := range []string{db, "COMPUTE_DATA_DIR", "--data-dir", "DATABASE_URL", "migrate up"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%v: %q does not name %s", args, err, want)
			}
		}
		if _, err := os.Stat(db); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%v created %s (stat: %v)", args, db, err)
		}
	}
	if _, err := run(t, ctx, "migrate", "up"); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, ctx, "apikey", "create"); err != nil || !strings.HasPrefix(out, "csk_") {
		t.Fatalf("apikey create after migrate up: %q, %v", out, err)
	}
}
