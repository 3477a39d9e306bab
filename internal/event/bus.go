package event

import (
	"context"
	"sync"
)

// Bus carries announcements of committed events between the processes that
// share a database. The database is the truth: an announcement only tells a
// reader of the event log (a stream relay) to look again, and a lost one
// costs latency, never an event. Implementations never block a publisher on
// a slow subscriber.
type Bus interface {
	// Publish announces events that a transaction of this process has
	// committed, in id order.
	Publish(ctx context.Context, evs []Event) error
	// Subscribe returns the announcements of every process on the bus,
	// this one included, until ctx ends; the channel is then closed. A
	// subscriber that falls behind misses announcements. An empty batch
	// says announcements may have been lost (a reconnect): look again.
	Subscribe(ctx context.Context) <-chan []Event
	// Close releases the bus's connections.
	Close() error
}

// subscriberBuffer is how many batches a subscriber may fall behind before
// it misses announcements.
const subscriberBuffer = 256

// InProc is the Bus of a single process: announcements go from the
// committing goroutine to this process's subscribers only.
type InProc struct {
	mu   sync.Mutex
	subs map[chan []Event]struct{}
}

var _ Bus = (*InProc)(nil)

// NewInProc returns an in-process bus.
func NewInProc() *InProc { return &InProc{subs: map[chan []Event]struct{}{}} }

// Publish implements Bus. It never blocks.
func (b *InProc) Publish(_ context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- evs:
		default: // a slow subscriber misses this one
		}
	}
	return nil
}

// Subscribe implements Bus.
func (b *InProc) Subscribe(ctx context.Context) <-chan []Event {
	ch := make(chan []Event, subscriberBuffer)
	b.mu.Lock()
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, ch)
		b.mu.Unlock()
		close(ch)
	})
	return ch
}

// Close implements Bus.
func (b *InProc) Close() error { return nil }
