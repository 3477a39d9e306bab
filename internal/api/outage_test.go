package api_test

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/tcpproxy"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// storeDown asserts a 503 or 507 problem with Retry-After that leaks
// nothing of the driver's error.
func storeDown(t *testing.T, r response, status int) {
	t.Helper()
	problemAt(t, r, status, "")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After on %d: %v", status, r.header)
	}
	for _, leak := range []string{"dial", "connect", "5432", "127.0.0.1", "sqlite", "SQLSTATE", "EOF", "disk"} {
		if strings.Contains(strings.ToLower(string(r.body)), strings.ToLower(leak)) {
			t.Errorf("problem leaks %q: %s", leak, r.body)
		}
	}
}

// TestDatabaseUnreachable: with PostgreSQL gone (a loopback proxy in front
// of it is cut), every route that needs it answers 503 with Retry-After (was 500),
// /readyz too, and the API recovers when the database comes back.
func TestDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	dsn := testdb.URL(t, "postgres")
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := tcpproxy.New(t, u.Host)
	u.Host = proxy.Addr()
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0; c.DatabaseURL = u.String() })
	id := e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": "m", "run_at": "2099-01-01T00:00:00Z"})["id"].(string)
	uncached := e.tenantKey("t1")
	if r := e.do("GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("readyz before the cut: %d %s", r.status, r.body)
	}

	proxy.Cut()
	create := map[string]any{"task_type": "echo", "message": "while down"}
	cases := []struct {
		name, method, path string
		body               any
		hdr                []string
	}{
		{"create", "POST", "/api/v1/tasks/", create, nil},
		{"typed create", "POST", "/api/v1/tasks/echo", map[string]any{"message": "x"}, nil},
		{"get", "GET", "/api/v1/tasks/" + id, nil, nil},
		{"list", "GET", "/api/v1/tasks/", nil, nil},
		{"patch", "PATCH", "/api/v1/tasks/" + id, map[string]any{"priority": 3}, nil},
		{"cancel", "POST", "/api/v1/tasks/" + id + "/cancel", nil, nil},
		{"result", "GET", "/api/v1/tasks/" + id + "/result", nil, nil},
		{"webhooks", "GET", "/api/v1/tasks/" + id + "/webhooks", nil, nil},
		{"task stream", "GET", "/api/v1/tasks/" + id + "/events", nil, nil},
		{"key not cached", "GET", "/api/v1/tasks/", nil, []string{"Authorization", "Bearer " + uncached}},
		{"readyz", "GET", "/readyz", nil, []string{"Authorization", ""}},
	}
	for _, tc := range cases {
		r := e.do(tc.method, tc.path, tc.body, tc.hdr...)
		t.Run(tc.name, func(t *testing.T) { storeDown(t, r, 503) })
	}

	proxy.Restore()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := e.do("POST", "/api/v1/tasks/", create)
		if r.status == 201 {
			break
		}
		storeDown(t, r, 503)
		if time.Now().After(deadline) {
			t.Fatal("the API did not recover after the database came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := e.do("GET", "/readyz", nil); r.status != 200 {
		t.Errorf("readyz after the database came back: %d %s", r.status, r.body)
	}
}

// TestDiskFullSQLite: on a full disk (a 4 MiB tmpfs, filled up), /readyz
// reports the store unwritable, creates that need space answer 507 with
// Retry-After (were 500) while reads still work, and both recover once
// space is freed. Mounting needs root; elsewhere the test is skipped.
func TestDiskFullSQLite(t *testing.T) {
	t.Parallel()
	dir := tmpfs(t, "size=4m")
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0; c.DataDir = dir })
	diskFull(t, e, dir)
	if r := e.do("GET", "/readyz", nil); r.status != 200 {
		t.Errorf("readyz after freeing space: %d %s", r.status, r.body)
	}
}

// TestDiskFullPostgres is TestDiskFullSQLite on a private PostgreSQL
// cluster whose data directory is on a 64 MiB tmpfs. Its /readyz stays
// unwritable for 30 s after the last write that failed for lack of space
// (the server's disk cannot be seen from here), so it is not asserted
// after freeing space. Needs root, initdb and pg_ctl, and a postgres
// user to run them; elsewhere the test is skipped.
func TestDiskFullPostgres(t *testing.T) {
	t.Parallel()
	dsn, dir := privatePostgres(t)
	e := start(t, "sqlite", func(c *config.Config) { c.Workers = 0; c.DatabaseURL = dsn })
	diskFull(t, e, dir)
}

// diskFull fills the file system at dir and checks what the API answers,
// then frees the space and checks that creates work again.
func diskFull(t *testing.T, e *env, dir string) {
	t.Helper()
	id := e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": "m", "run_at": "2099-01-01T00:00:00Z"})["id"].(string)
	if r := e.do("GET", "/readyz", nil); r.status != 200 {
		t.Fatalf("readyz before filling the disk: %d %s", r.status, r.body)
	}
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	big := strings.Repeat("x", 60000)
	full := false
	for i := 0; i < 200 && !full; i++ {
		r := e.do("POST", "/api/v1/tasks/echo", map[string]any{"message": big, "run_at": "2099-01-01T00:00:00Z"})
		if r.status == 201 {
			continue // there was still room where this write went
		}
		storeDown(t, r, 507)
		full = true
	}
	if !full {
		t.Fatal("200 creates of 60 KB succeeded on a full disk")
	}
	r := e.do("GET", "/readyz", nil)
	storeDown(t, r, 503)
	if !strings.Contains(string(r.body), "out of space") {
		t.Errorf("readyz does not say the store is full: %s", r.body)
	}
	e.must(200, "GET", "/api/v1/tasks/"+id, nil)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	e.must(201, "POST", "/api/v1/tasks/echo", map[string]any{"message": big, "run_at": "2099-01-01T00:00:00Z"})
}

// tmpfs mounts a tmpfs with the options in a new directory under the
// system's temporary directory (which every user can traverse), unmounted
// and removed when the test ends, after the servers it started.
func tmpfs(t *testing.T, opts string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir, err := os.MkdirTemp("", "compute-full-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		// A server stopped just before may hold the mount for a moment
		// while its processes exit ("target is busy"): try for 5 s.
		var (
			out []byte
			err error
		)
		for range 25 {
			if out, err = exec.Command("umount", dir).CombinedOutput(); err == nil {
				os.Remove(dir)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Errorf("umount %s: %v %s", dir, err, out)
	})
	return dir
}

// privatePostgres starts a PostgreSQL cluster of its own on a 64 MiB tmpfs
// and a free port, stopped when the test ends, and returns its URL and the
// tmpfs.
func privatePostgres(t *testing.T) (dsn, dir string) {
	t.Helper()
	pg, err := user.Lookup("postgres")
	if err != nil {
		t.Skipf("no postgres user to run initdb: %v", err)
	}
	for _, tool := range []string{"initdb", "pg_ctl", "runuser"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	dir = tmpfs(t, "size=64m,mode=0700,uid="+pg.Uid+",gid="+pg.Gid)
	data := filepath.Join(dir, "data")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	run := func(args ...string) error {
		cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %w\n%s", args, err, out)
		}
		return nil
	}
	if err := run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	if err := run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "start",
		"-o", "-p "+port+" -k "+dir+" -c listen_addresses=127.0.0.1 -c fsync=off"); err != nil {
		t.Fatal(err)
	}
	// Registered after tmpfs's cleanup, so it runs before the unmount.
	t.Cleanup(func() {
		if err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Error(err)
		}
	})
	return "postgres://postgres@127.0.0.1:" + port + "/postgres?sslmode=disable", dir
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 16<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return
			}
			t.Fatal(err)
		}
	}
}
