package app_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// TestCloseEndsExecutorProcesses: a command executor's long-lived server
// (server mode) is started by the first task and ends when the process
// stops, not left behind.
func TestCloseEndsExecutorProcesses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "server.pid")
	// A server that records its pid and never answers: the task stays
	// executing until the process stops.
	settings, _ := json.Marshal(map[string]any{
		"mode": "server", "grace_seconds": 1,
		"command": []string{"sh", "-c", "echo $$ > " + pidFile + "; while read -r line; do :; done; sleep 30"},
	})
	cfg := testserver.Config(t, "sqlite", key)
	cfg.File = filepath.Join(dir, "compute.yaml")
	cfg.Executors = map[string]config.ExecutorEntry{"local-model": {Type: "command", Settings: settings, Dir: dir}}
	cfg.Types = map[string]config.TypeEntry{"generation": {Executor: "local-model"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	var created struct{ ID string }
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		code := call(t, "POST", base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a dress","width":64,"height":64}`, &created)
		if code == 201 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create: %d", code)
		}
	}
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(20 * time.Millisecond) {
		raw, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
		if pid == 0 && time.Now().After(deadline) {
			t.Fatal("the server never started")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The server was ours (its pid came from the script we started); it is
	// gone once Close returns.
	if err := syscall.Kill(pid, 0); err == nil {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the executor's server (pid %d) outlived the process's Close", pid)
	}
}
