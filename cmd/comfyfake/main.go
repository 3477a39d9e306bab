// Command comfyfake serves the fake ComfyUI server of package comfyfake on
// a loopback address, for end-to-end tests that need it in another process.
// It prints the server's URL as its first line on stdout and runs until
// SIGINT or SIGTERM. With --control, /_comfyfake/stats, /_comfyfake/faults
// and /_comfyfake/restart let the test read what was recorded and inject
// failures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return // -h: the usage is printed; not a failure
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "comfyfake:", err)
		os.Exit(1)
	}
}

// run parses the flags, starts the server, prints its URL and serves until
// ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	s, err := comfyfake.New(opts)
	if err != nil {
		return fmt.Errorf("configuring: %w", err)
	}
	if err := s.Start(ctx); err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	defer s.Close()
	if _, err := fmt.Fprintln(stdout, s.URL()); err != nil {
		return fmt.Errorf("printing the url: %w", err)
	}
	<-ctx.Done()
	return nil
}

// parseFlags maps the command line onto comfyfake.Options.
func parseFlags(args []string, stderr io.Writer) (comfyfake.Options, error) {
	var o comfyfake.Options
	var verbose bool
	fs := flag.NewFlagSet("comfyfake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8188", "listen address (port 0 picks a free one)")
	fs.DurationVar(&o.NodeDelay, "node-delay", 0, "time each executed node takes")
	fs.IntVar(&o.Steps, "steps", 0, "progress steps each executed node reports")
	fs.DurationVar(&o.StepDelay, "step-delay", 0, "time before each progress step")
	fs.StringVar(&o.StepClass, "step-class", "", "only nodes of this class_type report steps")
	fs.IntVar(&o.MaxPixels, "max-pixels", 0, "width×height×batch beyond which a node raises an out-of-memory error (0: default)")
	fs.Int64Var(&o.MaxUploadSize, "max-upload-size", 0, "largest upload in bytes (0: 100 MiB)")
	fs.BoolVar(&o.ControlRoutes, "control", false, "serve /_comfyfake/stats, /_comfyfake/faults and /_comfyfake/restart")
	fs.IntVar(&o.Faults.HTTPStatus, "http-status", 0, "answer every request with this status")
	fs.IntVar(&o.Faults.StallAfter, "stall-after", 0, "stop sending on a websocket after this many messages")
	fs.DurationVar(&o.Faults.HistoryDelay, "history-delay", 0, "hide history entries this long after the done marker")
	fs.StringVar(&o.Faults.FailClass, "fail-class", "", "nodes of this class_type raise an exception")
	fs.BoolVar(&o.Faults.FailOOM, "fail-oom", false, "the --fail-class exception is an out-of-memory error")
	fs.BoolVar(&verbose, "v", false, "log requests and events to stderr")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("parsing flags: %w", err)
	}
	if verbose {
		o.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	return o, o.Validate()
}
