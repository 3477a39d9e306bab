package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// DefaultHeartbeat is how often a process heartbeats by default.
const DefaultHeartbeat = 10 * time.Second

// forgetAfter is how long a process that stopped heartbeating stays in the
// registry.
const forgetAfter = 24 * time.Hour

// Heartbeat registers a process in the store and renews its last-seen
// time every interval until stopped, so GET /monitoring/workers lists every
// live process of the deployment; each beat also forgets the processes
// silent for a day.
type Heartbeat struct {
	st       store.Monitor
	p        store.Process
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	stop context.CancelFunc
	done chan struct{}
}

// NewHeartbeat returns the heartbeat of process p (its Instance, Role and
// Version; the times are set here) every interval (default
// DefaultHeartbeat).
func NewHeartbeat(st store.Monitor, p store.Process, interval time.Duration, log *slog.Logger) *Heartbeat {
	if interval <= 0 {
		interval = DefaultHeartbeat
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p.StartedAt = task.Now()
	return &Heartbeat{st: st, p: p, interval: interval, log: log.With("component", "heartbeat", "instance", p.Instance)}
}

// Start registers the process, then heartbeats in the background until
// ctx ends or Stop is called. A failed registration is logged, not
// returned: the database may come back, and the next beat registers.
func (h *Heartbeat) Start(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stop != nil {
		return errors.New("heartbeat already started")
	}
	ctx, h.stop = context.WithCancel(ctx)
	h.done = make(chan struct{})
	h.beat(ctx)
	go func() {
		defer close(h.done)
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				h.beat(ctx)
			}
		}
	}()
	return nil
}

// Stop ends the heartbeat and waits for it; it is idempotent.
func (h *Heartbeat) Stop() {
	h.mu.Lock()
	stop, done := h.stop, h.done
	h.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
}

// beat writes the process's row and forgets the long-silent ones.
func (h *Heartbeat) beat(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, h.interval)
	defer cancel()
	p := h.p
	p.LastSeen = task.Now()
	if err := h.st.RegisterProcess(ctx, p); err != nil {
		if ctx.Err() == nil {
			h.log.Warn("heartbeat failed", "error", err)
		}
		return
	}
	if _, err := h.st.ForgetProcesses(ctx, p.LastSeen.Add(-forgetAfter)); err != nil && ctx.Err() == nil {
		h.log.Warn("forgetting silent processes", "error", fmt.Errorf("heartbeat: %w", err))
	}
}
