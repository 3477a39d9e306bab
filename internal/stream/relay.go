// Package stream turns the event log into live streams. A Relay per process
// tails task_events by id, woken by bus announcements and database
// notifications (and a slow poll while anyone listens), and fans the events
// out to filtered subscriptions. Event ids follow commit order on both
// databases, so reading "id > cursor" never skips an event that commits
// later; bus payloads are only wake-ups, never delivered themselves. A
// Follower combines a replay from the log with a subscription, giving each
// event exactly once, in id order, across reconnects and overflows.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// EventLog is what the relay reads: the store's event log.
type EventLog interface {
	// ListEvents returns events after an id, oldest first.
	ListEvents(ctx context.Context, f store.EventFilter) ([]event.Event, error)
	// LastEventID returns the newest committed event id (0: none).
	LastEventID(ctx context.Context) (int64, error)
}

// Notifier delivers the database's notifications (store.Queue.Subscribe):
// on PostgreSQL, NOTIFYs from every process, even without a bus.
type Notifier interface {
	Subscribe(ctx context.Context) <-chan store.Notification
}

// Config configures a Relay. Zero values take the documented defaults.
type Config struct {
	// PollInterval is how often the relay reads the log without a
	// wake-up, only while it has subscribers (default 2s): a safety net
	// for lost announcements.
	PollInterval time.Duration
	// PageSize is how many events one read of the log returns (default
	// 500).
	PageSize int
	// Buffer is how many events a subscription may fall behind before it
	// is dropped and its follower catches up from the log (default 1024).
	Buffer int
	// KeepAlive is how often an idle stream sends a comment so proxies
	// and clients keep the connection (default 15s).
	KeepAlive time.Duration
}

func (c *Config) setDefaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.PageSize <= 0 {
		c.PageSize = 500
	}
	if c.Buffer <= 0 {
		c.Buffer = 1024
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 15 * time.Second
	}
}

// Errors that end a subscription.
var (
	// ErrLagged means the subscriber fell more than Buffer events behind;
	// it must catch up from the log (a Follower does so by itself).
	ErrLagged = errors.New("stream: subscriber fell behind")
	// ErrStopped means the relay stopped (the process is shutting down).
	ErrStopped = errors.New("stream: relay stopped")
)

// Filter selects the events of a subscription. Zero values do not filter,
// except Scope, which must be store.AdminScope or a tenant; a list matches
// any of its values.
type Filter struct {
	Scope     store.Scope
	TaskID    uuid.UUID
	TaskTypes []string
	Statuses  []task.Status
	TenantID  string
}

// Match reports whether e passes the filter.
func (f Filter) Match(e event.Event) bool {
	switch {
	case !f.Scope.Admin && e.TenantID != f.Scope.TenantID:
		return false
	case f.TaskID != uuid.Nil && e.TaskID != f.TaskID:
		return false
	case len(f.TaskTypes) > 0 && !slices.Contains(f.TaskTypes, e.TaskType):
		return false
	case len(f.Statuses) > 0 && !slices.Contains(f.Statuses, e.Status):
		return false
	case f.TenantID != "" && e.TenantID != f.TenantID:
		return false
	}
	return true
}

// EventFilter is the store query for the filter's events after an id.
func (f Filter) EventFilter(after int64, limit int) store.EventFilter {
	return store.EventFilter{
		TaskID: f.TaskID, AfterID: after, Limit: limit, Scope: f.Scope,
		TaskTypes: f.TaskTypes, Statuses: f.Statuses, TenantID: f.TenantID,
	}
}

// Relay tails the event log for this process's subscribers.
type Relay struct {
	cfg    Config
	log    EventLog
	bus    event.Bus
	notes  Notifier
	logger *slog.Logger
	wake   chan struct{}

	// cycle serialises reads of the log with the cursor they advance;
	// Subscribe holds it to learn the position it starts from.
	cycle  sync.Mutex
	cursor int64
	// stale means the relay skipped reads while nobody listened, so the
	// cursor must be moved to the log's end before the next subscriber.
	stale bool

	mu      sync.Mutex // guards subs, stopped and the subscriptions' channels
	subs    map[*Subscription]struct{}
	stopped bool

	startOnce sync.Once
	cancel    context.CancelFunc
	done      chan struct{}
	errs      event.LogThrottle
}

// New returns a relay over the log, woken by bus (may be nil) and notes
// (may be nil). Call Start.
func New(cfg Config, log EventLog, bus event.Bus, notes Notifier, logger *slog.Logger) *Relay {
	cfg.setDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{
		cfg: cfg, log: log, bus: bus, notes: notes, logger: logger.With("component", "relay"),
		wake: make(chan struct{}, 1), stale: true, subs: map[*Subscription]struct{}{},
		done: make(chan struct{}), errs: event.LogThrottle{Every: 30 * time.Second},
	}
}

// Config returns the relay's configuration with defaults applied.
func (r *Relay) Config() Config { return r.cfg }

// Start begins tailing the log in the background.
func (r *Relay) Start(ctx context.Context) error {
	started := false
	r.startOnce.Do(func() {
		started = true
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		r.cancel = cancel
		var wg sync.WaitGroup
		if r.bus != nil {
			ch := r.bus.Subscribe(ctx)
			wg.Go(func() {
				for range ch {
					r.Wake()
				}
			})
		}
		if r.notes != nil {
			ch := r.notes.Subscribe(ctx)
			wg.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case n := <-ch:
						if n.Kind != store.NotifyCancel {
							r.Wake() // events, or a wake-up after a reconnect
						}
					}
				}
			})
		}
		wg.Go(func() { r.loop(ctx) })
		go func() { wg.Wait(); close(r.done) }()
	})
	if !started {
		return errors.New("stream: relay already started")
	}
	return nil
}

// Stop stops tailing and ends every subscription with ErrStopped. It is
// idempotent; a relay that was never started stops at once.
func (r *Relay) Stop() {
	r.startOnce.Do(func() { close(r.done) }) // never started: nothing to wait for
	if r.cancel != nil {
		r.cancel()
	}
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	for s := range r.subs {
		r.endLocked(s, ErrStopped)
	}
}

// Wake makes the relay read the log now. It never blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Relay) loop(ctx context.Context) {
	ticker := time.NewTicker(r.cfg.PollInterval)
	defer ticker.Stop()
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-ticker.C:
		case <-retry:
		}
		retry = nil
		if err := r.catchUp(ctx); err != nil && ctx.Err() == nil {
			if ok, suppressed := r.errs.Allow(); ok {
				r.logger.Warn("reading the event log; retrying", "error", err, "suppressed", suppressed)
			}
			retry = time.After(250 * time.Millisecond)
		}
	}
}

// catchUp reads the log after the cursor, page by page, and fans the
// events out. Without subscribers it reads nothing.
func (r *Relay) catchUp(ctx context.Context) error {
	r.cycle.Lock()
	defer r.cycle.Unlock()
	r.mu.Lock()
	n := len(r.subs)
	r.mu.Unlock()
	if n == 0 {
		r.stale = true
		return nil
	}
	for {
		evs, err := r.log.ListEvents(ctx, store.EventFilter{Scope: store.AdminScope, AfterID: r.cursor, Limit: r.cfg.PageSize})
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		r.fanOut(evs)
		r.cursor = evs[len(evs)-1].ID
		if len(evs) < r.cfg.PageSize {
			return nil
		}
	}
}

// fanOut offers events to every subscription without blocking; one that
// has no room left is ended with ErrLagged.
func (r *Relay) fanOut(evs []event.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for s := range r.subs {
		for _, e := range evs {
			if !s.f.Match(e) {
				continue
			}
			select {
			case s.ch <- e:
			default:
				r.endLocked(s, ErrLagged)
			}
			if s.err != nil {
				break
			}
		}
	}
}

// endLocked ends a subscription; r.mu is held.
func (r *Relay) endLocked(s *Subscription, err error) {
	if _, ok := r.subs[s]; !ok {
		return
	}
	delete(r.subs, s)
	s.err = err
	close(s.ch)
}

// Subscribe returns a subscription to the live events matching f: every
// event with an id greater than its From() is delivered, in id order,
// until it ends. Events up to From() are in the log; a caller that wants
// them reads them there (see Follow).
func (r *Relay) Subscribe(ctx context.Context, f Filter) (*Subscription, error) {
	r.cycle.Lock()
	defer r.cycle.Unlock()
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	if stopped {
		return nil, ErrStopped
	}
	if r.stale {
		id, err := r.log.LastEventID(ctx)
		if err != nil {
			return nil, fmt.Errorf("subscribing to events: %w", err)
		}
		r.cursor, r.stale = id, false
	}
	s := &Subscription{r: r, f: f, from: r.cursor, ch: make(chan event.Event, r.cfg.Buffer)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil, ErrStopped
	}
	r.subs[s] = struct{}{}
	return s, nil
}

// Subscribers returns how many subscriptions are open.
func (r *Relay) Subscribers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.subs)
}

// Subscription is one subscriber's live feed.
type Subscription struct {
	r    *Relay
	f    Filter
	from int64
	ch   chan event.Event
	err  error // set before ch is closed
}

// Events delivers the events; it is closed when the subscription ends.
func (s *Subscription) Events() <-chan event.Event { return s.ch }

// From is the id after which the subscription delivers every event.
func (s *Subscription) From() int64 { return s.from }

// Err says why Events was closed: ErrLagged, ErrStopped, or nil after
// Close.
func (s *Subscription) Err() error {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	return s.err
}

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	s.r.mu.Lock()
	defer s.r.mu.Unlock()
	s.r.endLocked(s, nil)
}
