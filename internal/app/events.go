package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/stream"
)

// Events is a process's event plumbing: the bus (in-process, or Redis when
// REDIS_URL is set), the announcer that publishes every committed
// transaction's events on it without blocking the commit, and, in processes
// that serve the API, the relay that feeds the SSE streams from the event
// log.
type Events struct {
	Bus       event.Bus
	Announcer *event.Announcer
	// Relay is nil in processes without the API (the worker role).
	Relay *stream.Relay
}

// newEvents builds the bus and the announcer. A Redis server that is down
// is not an error: announcements are dropped until it is back, and streams
// catch up from the database.
func newEvents(cfg config.Config, log *slog.Logger) (*Events, error) {
	var bus event.Bus
	if cfg.RedisURL != "" {
		rb, err := event.NewRedis(cfg.RedisURL, cfg.RedisPrefix, log)
		if err != nil {
			return nil, fmt.Errorf("config: RedisURL (REDIS_URL): %w", err)
		}
		log.Info("events are announced on redis", "channel", rb.Channel())
		bus = rb
	} else {
		bus = event.NewInProc()
	}
	return &Events{Bus: bus, Announcer: event.NewAnnouncer(bus, log)}, nil
}

// addRelay builds the relay over the store's event log, woken by the bus
// and by the database's notifications.
func (e *Events) addRelay(cfg config.Config, st interface {
	stream.EventLog
	stream.Notifier
}, log *slog.Logger) {
	e.Relay = stream.New(stream.Config{KeepAlive: cfg.SSEKeepAlive}, st, e.Bus, st, log)
}

// start starts publishing and relaying.
func (e *Events) start(ctx context.Context) error {
	if e == nil {
		return nil
	}
	if err := e.Announcer.Start(ctx); err != nil {
		return err
	}
	if e.Relay != nil {
		return e.Relay.Start(ctx)
	}
	return nil
}

// stop ends the streams and publishes what is still queued; call it after
// the engine has stopped writing.
func (e *Events) stop() {
	if e == nil {
		return
	}
	if e.Relay != nil {
		e.Relay.Stop()
	}
	e.Announcer.Stop()
}

// close releases the bus's connections.
func (e *Events) close() error {
	if e == nil {
		return nil
	}
	return e.Bus.Close()
}
