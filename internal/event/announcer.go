package event

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Announcer publishes the events of committed transactions on a bus without
// ever blocking the goroutine that committed them: Announce (the store's
// event sink) queues, a goroutine publishes. When the bus fails or the queue
// is full, announcements are dropped and counted; errors are logged at most
// once per interval. Readers of the event log lose latency, never events.
type Announcer struct {
	bus   Bus
	log   *slog.Logger
	queue chan []Event
	quit  chan struct{}
	done  chan struct{}

	mu      sync.Mutex
	started bool
	stopped bool

	dropped atomic.Int64
	// fullLog and errLog throttle the two warnings.
	fullLog, errLog LogThrottle
}

// announceQueue is how many committed batches may wait for the bus.
const announceQueue = 4096

// publishTimeout bounds one Publish call.
const publishTimeout = 2 * time.Second

// NewAnnouncer returns an announcer publishing on bus.
func NewAnnouncer(bus Bus, log *slog.Logger) *Announcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Announcer{
		bus:     bus,
		log:     log.With("component", "announcer"),
		queue:   make(chan []Event, announceQueue),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		fullLog: LogThrottle{Every: 30 * time.Second},
		errLog:  LogThrottle{Every: 30 * time.Second},
	}
}

// Announce queues the events of one committed transaction. It never
// blocks; after Stop it drops them.
func (a *Announcer) Announce(evs []Event) {
	if len(evs) == 0 {
		return
	}
	select {
	case <-a.quit:
		return
	default:
	}
	select {
	case a.queue <- evs:
	default:
		a.dropped.Add(int64(len(evs)))
		if ok, suppressed := a.fullLog.Allow(); ok {
			a.log.Warn("event bus is behind; dropping announcements (live streams catch up from the database)",
				"dropped_total", a.dropped.Load(), "suppressed", suppressed)
		}
	}
}

// Dropped returns how many events were not announced.
func (a *Announcer) Dropped() int64 { return a.dropped.Load() }

// Start begins publishing in the background.
func (a *Announcer) Start(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("event: announcer already started")
	}
	a.started = true
	go a.loop()
	return nil
}

// Stop publishes what is queued (for at most a few seconds) and stops. It
// is idempotent.
func (a *Announcer) Stop() {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return
	}
	a.stopped = true
	started := a.started
	close(a.quit)
	a.mu.Unlock()
	if started {
		<-a.done
	}
}

// maxPublishBatch bounds the events of one Publish call.
const maxPublishBatch = 500

func (a *Announcer) loop() {
	defer close(a.done)
	var drainBy time.Time
	for {
		stopping := false
		select {
		case <-a.quit:
			stopping = true
		default:
		}
		var evs []Event
		if stopping {
			if drainBy.IsZero() {
				drainBy = time.Now().Add(publishTimeout)
			}
			select {
			case evs = <-a.queue:
			default:
				return
			}
		} else {
			select {
			case evs = <-a.queue:
			case <-a.quit:
				continue
			}
		}
		// Coalesce what else is waiting into one round trip.
	more:
		for len(evs) < maxPublishBatch {
			select {
			case next := <-a.queue:
				evs = append(evs[:len(evs):len(evs)], next...)
			default:
				break more
			}
		}
		if !drainBy.IsZero() && time.Now().After(drainBy) {
			a.dropped.Add(int64(len(evs)))
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
		err := a.bus.Publish(ctx, evs)
		cancel()
		if err != nil {
			a.dropped.Add(int64(len(evs)))
			if ok, suppressed := a.errLog.Allow(); ok {
				a.log.Warn("publishing events on the bus failed; task processing goes on and live streams catch up from the database",
					"error", err, "events", len(evs), "dropped_total", a.dropped.Load(), "suppressed", suppressed)
			}
		}
	}
}

// LogThrottle lets a repeated error be logged at most once per interval.
// The zero value with Every set is ready to use.
type LogThrottle struct {
	// Every is the shortest time between two logs.
	Every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Allow reports whether to log now, and how many were suppressed since the
// last time it did.
func (l *LogThrottle) Allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.Every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
