// Package testserver runs the real server wiring (app.New + Serve) on a
// loopback port for tests and benchmarks, with a database of its own.
package testserver

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// Config returns a configuration for one test server: its own data
// directory, the admin key, 4 workers, a 2 s shutdown grace, and a fresh
// database of the dialect ("sqlite" or "postgres").
func Config(tb testing.TB, dialect, key string) config.Config {
	tb.Helper()
	cfg := config.Default()
	cfg.DataDir = tb.TempDir()
	cfg.APIKey = key
	cfg.Workers = 4
	cfg.ShutdownGrace = 2 * time.Second
	if dialect == "postgres" {
		cfg.DatabaseURL = testdb.URL(tb, "postgres")
	}
	return cfg
}

// Server is one running server process.
type Server struct {
	// Base is its URL, http://127.0.0.1:port; empty without the API.
	Base string
	// App is its wiring, for direct access to the store.
	App *app.App
	// stop ends the process once.
	stop func()
}

// Stop shuts the process down now (as SIGTERM would) and waits for it,
// checking that Serve returned without error; the test's end does it
// otherwise. It is idempotent.
func (s *Server) Stop() { s.stop() }

// Start listens on a free loopback port (cfg.Addr is overwritten), builds
// the process with app.New and serves until the test ends, then checks that
// Serve returned without error. With opts.NoAPI (the worker role) nothing
// listens, cfg.Addr is kept and Base is empty. A nil log discards the logs.
func Start(tb testing.TB, cfg config.Config, opts app.Options, log *slog.Logger) *Server {
	tb.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var ln net.Listener
	if !opts.NoAPI {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
		cfg.Addr = ln.Addr().String()
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, opts, log)
	if err != nil {
		cancel()
		if ln != nil {
			ln.Close()
		}
		tb.Fatalf("starting the server: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve: %v", err)
			}
			a.Close()
		})
	}
	tb.Cleanup(stop)
	if ln == nil {
		return &Server{App: a, stop: stop}
	}
	return &Server{Base: "http://" + cfg.Addr, App: a, stop: stop}
}
