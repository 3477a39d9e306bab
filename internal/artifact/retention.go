package artifact

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Expirer is the database's side of artifact retention
// (sqlstore.Store): which finished tasks' artifacts are due, and the mark
// that they were removed.
type Expirer interface {
	// ArtifactsToExpire returns up to limit finished tasks that completed
	// before before and whose artifacts are still kept, oldest first.
	ArtifactsToExpire(ctx context.Context, before time.Time, limit int) ([]uuid.UUID, error)
	// MarkArtifactsExpired records that the tasks' artifacts were removed
	// at at, for those still finished before before.
	MarkArtifactsExpired(ctx context.Context, ids []uuid.UUID, before, at time.Time) error
}

// RetentionConfig configures a Retention. Zero values take the defaults.
type RetentionConfig struct {
	// Keep is how long after a task finished its artifacts are kept
	// (COMPUTE_ARTIFACT_RETENTION). It must be positive.
	Keep time.Duration
	// Interval is how often a pass runs (default 10m).
	Interval time.Duration
	// Batch is how many tasks one database read returns (default 100).
	Batch int
}

// Retention deletes the artifacts of tasks that finished longer ago than
// Keep, on an interval; the tasks themselves stay (their artifact URLs
// answer 404). Every worker process may run one: a pass removes what is
// due and marks it, and two passes at once only remove the same objects
// twice.
type Retention struct {
	cfg    RetentionConfig
	db     Expirer
	st     Store
	log    *slog.Logger
	once   sync.Once
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRetention returns a retention of st's artifacts over db. Call Start.
func NewRetention(cfg RetentionConfig, db Expirer, st Store, log *slog.Logger) (*Retention, error) {
	if cfg.Keep <= 0 {
		return nil, errors.New("artifact: retention must keep artifacts for a positive duration")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Retention{cfg: cfg, db: db, st: st, log: log.With("component", "artifact_retention"), done: make(chan struct{})}, nil
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
				if _, _, err := r.Prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
					r.log.Warn("removing expired artifacts", "error", err)
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
		return errors.New("artifact: retention already started")
	}
	return nil
}

// Stop ends the passes and waits for the current one. It is idempotent.
func (r *Retention) Stop() {
	r.once.Do(func() { close(r.done) })
	if r.cancel != nil {
		r.cancel()
	}
	<-r.done
}

// Prune runs one pass: it removes the artifacts of the tasks that finished
// before now-Keep, batch by batch, marking each batch once its objects are
// gone, and returns how many tasks and objects it handled. A task whose
// artifacts cannot be removed is left unmarked, for the next pass.
func (r *Retention) Prune(ctx context.Context, now time.Time) (tasks, objects int, err error) {
	before := now.Add(-r.cfg.Keep)
	defer func() {
		if tasks > 0 {
			r.log.Info("removed expired artifacts", "tasks", tasks, "objects", objects, "finished_before", before)
		}
	}()
	for {
		ids, err := r.db.ArtifactsToExpire(ctx, before, r.cfg.Batch)
		if err != nil {
			return tasks, objects, err
		}
		var done []uuid.UUID
		var failed error
		for _, id := range ids {
			n, err := r.st.DeleteTask(ctx, id.String())
			objects += n
			if err != nil {
				failed = err
				break
			}
			done = append(done, id)
		}
		if len(done) > 0 {
			if err := r.db.MarkArtifactsExpired(ctx, done, before, time.Now()); err != nil {
				return tasks, objects, err
			}
			tasks += len(done)
		}
		if failed != nil {
			return tasks, objects, failed
		}
		if len(ids) < r.cfg.Batch {
			return tasks, objects, nil
		}
	}
}
