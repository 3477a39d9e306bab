// Command custom-type is a compute server with a task type of its own:
// it imports the module, registers `word_count` (package wordcount, with
// its own migrations) next to the built-in types, and serves them all.
//
//	go run ./examples/custom-type          # on 127.0.0.1:9000, SQLite in ./data
//
// It reads the same environment as `compute serve` (COMPUTE_ADDR,
// COMPUTE_DATA_DIR, DATABASE_URL, COMPUTE_API_KEY, …).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/computeserver/compute/examples/custom-type/wordcount"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/tasks"
)

func main() {
	cfg, err := config.FromEnv()
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "custom-type:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err == nil {
		err = run(ctx, cfg, ln, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "custom-type:", err)
		os.Exit(1)
	}
}

// register adds the built-in task types, then word_count.
func register(reg *registry.Registry, deps tasks.Deps) error {
	if err := tasks.Register(reg, deps); err != nil {
		return err
	}
	return reg.Register(wordcount.Type())
}

// run serves the API and the workers on ln until ctx ends.
func run(ctx context.Context, cfg config.Config, ln net.Listener, log *slog.Logger) error {
	a, err := app.New(ctx, cfg, app.Options{Register: register, Workers: true, Version: "custom-type"}, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer a.Close()
	return a.Serve(ctx, ln)
}
