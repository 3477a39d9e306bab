package stream

import (
	"context"
	"errors"
	"time"

	"github.com/computeserver/compute/internal/event"
)

// Follower gives a client every event matching its filter after a
// position, each exactly once and in id order: it subscribes to the relay
// first, then replays from the log (page by page) until caught up, then
// takes the live feed, skipping what the replay already gave. When its
// subscription overflows it subscribes again and catches up from the log,
// so a slow client costs the relay nothing.
type Follower struct {
	r        *Relay
	f        Filter
	sub      *Subscription
	last     int64
	caughtUp bool
	// onCaughtUp is called once, when the first replay has caught up.
	onCaughtUp func()
}

// Follow starts following the events matching f with ids greater than
// after; a negative after means from now (the relay's position).
func (r *Relay) Follow(ctx context.Context, f Filter, after int64) (*Follower, error) {
	sub, err := r.Subscribe(ctx, f)
	if err != nil {
		return nil, err
	}
	if after < 0 {
		after = sub.From()
	}
	return &Follower{r: r, f: f, sub: sub, last: after}, nil
}

// Last is the id of the last event Next returned (or the starting
// position).
func (fw *Follower) Last() int64 { return fw.last }

// OnCaughtUp makes the follower call f once, the first time its replay
// from the log has caught up with its subscription (for example to give
// back a replay slot). A follower that lags later replays again without
// calling it.
func (fw *Follower) OnCaughtUp(f func()) { fw.onCaughtUp = f }

// Next returns the next events, in id order; it blocks until there are
// some. It returns (nil, nil) when tick fires first (for keep-alives; tick
// may be nil), ctx's error when ctx ends, and ErrStopped when the relay
// stops.
func (fw *Follower) Next(ctx context.Context, tick <-chan time.Time) ([]event.Event, error) {
	for {
		if !fw.caughtUp {
			page := fw.r.cfg.PageSize
			evs, err := fw.r.log.ListEvents(ctx, fw.f.EventFilter(fw.last, page))
			if err != nil {
				return nil, err
			}
			if len(evs) < page {
				fw.caughtUp = true
				if f := fw.onCaughtUp; f != nil {
					fw.onCaughtUp = nil
					f()
				}
			}
			if len(evs) > 0 {
				fw.last = evs[len(evs)-1].ID
				return evs, nil
			}
			continue
		}
		select {
		case e, ok := <-fw.sub.Events():
			if !ok {
				if err := fw.sub.Err(); !errors.Is(err, ErrLagged) {
					if err == nil {
						err = ErrStopped
					}
					return nil, err
				}
				// Fell behind: subscribe again, then catch up from
				// the log, where nothing is ever lost.
				sub, err := fw.r.Subscribe(ctx, fw.f)
				if err != nil {
					return nil, err
				}
				fw.sub, fw.caughtUp = sub, false
				continue
			}
			if e.ID <= fw.last {
				continue // the replay gave it already
			}
			batch := []event.Event{e}
			fw.last = e.ID
		more:
			for len(batch) < fw.r.cfg.PageSize {
				select {
				case e, ok := <-fw.sub.Events():
					if !ok {
						break more
					}
					if e.ID > fw.last {
						batch = append(batch, e)
						fw.last = e.ID
					}
				default:
					break more
				}
			}
			return batch, nil
		case <-tick:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close ends the follower's subscription.
func (fw *Follower) Close() { fw.sub.Close() }
