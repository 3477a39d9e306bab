package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store"
)

// processName names a process that runs no workers (and so holds no
// instance identity) in the registry of processes.
func processName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), uuid.NewString()[:8])
}

// role is the process's role as the registry of processes shows it.
func role(opts Options, cfg config.Config) string {
	switch {
	case opts.NoAPI:
		return "worker"
	case opts.Workers && cfg.Workers > 0:
		return "serve"
	default:
		return "api"
	}
}

// pools returns the store's connection pools, when it has any to report.
func pools(st store.Store) map[string]*sql.DB {
	if p, ok := st.(interface{ Pools() map[string]*sql.DB }); ok {
		return p.Pools()
	}
	return nil
}

// serveMetrics serves GET /metrics on cfg.MetricsAddr, when set, until
// stop is called.
func (a *App) serveMetrics() (stop func(), err error) {
	if a.Config.MetricsAddr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", a.Config.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("COMPUTE_METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", a.Metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Warn("serving /metrics", "error", err)
		}
	}()
	a.log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
