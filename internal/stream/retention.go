package stream

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/event"
)

// Pruner deletes old events in windows (sqlstore.Store.PruneEvents).
type Pruner interface {
	// PruneEvents deletes the events created before before among the
	// next limit after afterID, returning how many it deleted and where
	// to continue (0: done).
	PruneEvents(ctx context.Context, before time.Time, afterID int64, limit int) (deleted int, next int64, err error)
}

// RetentionConfig configures a Retention. Zero values take the defaults.
type RetentionConfig struct {
	// Keep is how long events are kept (COMPUTE_EVENT_RETENTION). It
	// must be positive.
	Keep time.Duration
	// Interval is how often a pass runs (default 1m).
	Interval time.Duration
	// Batch is how many events one statement examines (default 1000):
	// small, so each deleting transaction is short.
	Batch int
}

// Retention deletes events older than Keep, a small batch at a time, on
// an interval. Every node may run one: the batches are idempotent.
type Retention struct {
	cfg    RetentionConfig
	p      Pruner
	log    *slog.Logger
	errs   event.LogThrottle
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRetention returns a retention over p. Call Start.
func NewRetention(cfg RetentionConfig, p Pruner, log *slog.Logger) (*Retention, error) {
	if cfg.Keep <= 0 {
		return nil, errors.New("stream: retention must keep events for a positive duration")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 1000
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retention{cfg: cfg, p: p, log: log.With("component", "event_retention"),
		errs: event.LogThrottle{Every: time.Minute}, done: make(chan struct{})}, nil
}

// Start runs a pass now and then every Interval until Stop.
func (r *Retention) Start(ctx context.Context) error {
	started := false
	r.once.Do(func() {
		started = true
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.cancel = cancel
		go func() {
			defer close(r.done)
			t := time.NewTicker(r.cfg.Interval)
			defer t.Stop()
			for {
				if _, err := r.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
					if ok, suppressed := r.errs.Allow(); ok {
						r.log.Warn("pruning the event log", "error", err, "suppressed", suppressed)
					}
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	})
	if !started {
		return errors.New("stream: retention already started")
	}
	return nil
}

// Stop ends the passes and waits for the current batch. It is idempotent.
func (r *Retention) Stop() {
	r.once.Do(func() { close(r.done) })
	if r.cancel != nil {
		r.cancel()
	}
	<-r.done
}

// Prune runs one pass: it deletes the events created before now-Keep,
// batch by batch, and returns how many it deleted.
func (r *Retention) Prune(ctx context.Context, now time.Time) (int, error) {
	before := now.Add(-r.cfg.Keep)
	total := 0
	var after int64
	for {
		n, next, err := r.p.PruneEvents(ctx, before, after, r.cfg.Batch)
		total += n
		if err != nil {
			return total, err
		}
		if next == 0 {
			if total > 0 {
				r.log.Info("pruned the event log", "deleted", total, "before", before)
			}
			return total, nil
		}
		after = next
	}
}
