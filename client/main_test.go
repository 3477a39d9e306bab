package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
)

// testKey is the admin key of the test server.
const testKey = "client-test-admin-key-0123456789"

// serverURL is the test server's base URL, set by TestMain (and given to
// the examples as COMPUTE_URL, with COMPUTE_API_KEY).
var serverURL string

// TestMain runs the real server in-process on loopback, on SQLite in a
// temporary directory, for the examples and the tests: the mock executor
// and "slow", a mock that sleeps 300 ms before each of its four progress
// steps.
func TestMain(m *testing.M) {
	code, err := runWithServer(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client tests:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func runWithServer(m *testing.M) (int, error) {
	dir, err := os.MkdirTemp("", "compute-client-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.APIKey = testKey
	cfg.Workers = 4
	cfg.ShutdownGrace = 2 * time.Second
	cfg.File = "client-test.yaml"
	cfg.Executors = map[string]config.ExecutorEntry{
		"mock":  {Type: "mock"},
		"local": {Type: "local"},
		"slow":  {Type: "mock", Settings: json.RawMessage(`{"step_delay":"300ms"}`)},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	cfg.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, cfg, app.Options{Workers: true, Version: "test"}, slog.New(slog.DiscardHandler))
	if err != nil {
		ln.Close()
		return 0, err
	}
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	serverURL = "http://" + cfg.Addr
	if err := waitReady(serverURL); err != nil {
		return 0, err
	}
	os.Setenv("COMPUTE_URL", serverURL)
	os.Setenv("COMPUTE_API_KEY", testKey)
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		return code, fmt.Errorf("serve: %w", err)
	}
	return code, nil
}

func waitReady(base string) error {
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	return fmt.Errorf("the server at %s did not become ready", base)
}
