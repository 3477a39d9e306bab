package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/computeserver/compute/internal/task"
)

// Message is what the Redis bus publishes on the channel "<prefix>:events",
// one JSON message per event, in id order per publishing process. External
// consumers may read it as they read the original's Redis events; Body is
// the webhook body (the original's receiver schema). Redis pub/sub keeps
// nothing: a consumer that needs every event reads the SSE stream or the
// database, which replay from an id.
type Message struct {
	ID             int64           `json:"id"`
	TaskID         uuid.UUID       `json:"task_id"`
	TaskType       string          `json:"task_type"`
	EventType      string          `json:"event_type"`
	Status         task.Status     `json:"status"`
	OriginTenantID string          `json:"origin_tenant_id"`
	CreatedAt      time.Time       `json:"created_at"`
	Body           json.RawMessage `json:"body"`
}

// MessageOf returns the bus message of e.
func MessageOf(e Event) Message {
	return Message{
		ID: e.ID, TaskID: e.TaskID, TaskType: e.TaskType, EventType: e.EventType, Status: e.Status,
		OriginTenantID: e.TenantID, CreatedAt: e.CreatedAt, Body: e.Body,
	}
}

// Event returns the event m carries.
func (m Message) Event() Event {
	kind := KindStatus
	if strings.HasSuffix(m.EventType, "_"+KindProgress) {
		kind = KindProgress
	}
	return Event{
		ID: m.ID, TaskID: m.TaskID, TaskType: m.TaskType, EventType: m.EventType, Status: m.Status,
		TenantID: m.OriginTenantID, CreatedAt: m.CreatedAt, Body: m.Body, Kind: kind,
	}
}

// RedisBus is the Bus between processes: Redis pub/sub on one channel.
// Redis being down (at start or later) never fails or blocks the caller
// beyond Publish's own timeouts: subscriptions reconnect with backoff and
// announce the reconnect with an empty batch, so readers catch up from the
// database.
type RedisBus struct {
	client  *redis.Client
	channel string
	log     *slog.Logger
	errs    LogThrottle
}

var _ Bus = (*RedisBus)(nil)

// quietRedis silences go-redis's own logger, once per process.
var quietRedis sync.Once

// redisTimeout bounds dials, reads and writes to Redis, so an unreachable
// server costs little.
const redisTimeout = 2 * time.Second

// NewRedis returns a bus on the Redis server at rawURL (redis:// or
// rediss://), on the channel "<prefix>:events". It does not connect: an
// unreachable server is not an error here.
func NewRedis(rawURL, prefix string, log *slog.Logger) (*RedisBus, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the redis URL: %w", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = redisTimeout
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = redisTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = redisTimeout
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = 1
	}
	if opts.DialerRetries == 0 {
		opts.DialerRetries = 1
	}
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// go-redis logs every failed dial on its own; this package reports
	// Redis errors itself, at most once per interval.
	quietRedis.Do(func() { redis.SetLogger(&logging.VoidLogger{}) })
	if prefix == "" {
		prefix = "compute"
	}
	return &RedisBus{
		client:  redis.NewClient(opts),
		channel: prefix + ":events",
		log:     log.With("component", "redis_bus"),
		errs:    LogThrottle{Every: 30 * time.Second},
	}, nil
}

// Channel is the Redis channel the bus publishes on.
func (b *RedisBus) Channel() string { return b.channel }

// Publish implements Bus: one PUBLISH per event, in one round trip.
func (b *RedisBus) Publish(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	pipe := b.client.Pipeline()
	for _, e := range evs {
		raw, err := json.Marshal(MessageOf(e))
		if err != nil {
			return fmt.Errorf("encoding event %d: %w", e.ID, err)
		}
		pipe.Publish(ctx, b.channel, raw)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("publishing %d events on redis: %w", len(evs), err)
	}
	return nil
}

// Subscribe implements Bus.
func (b *RedisBus) Subscribe(ctx context.Context) <-chan []Event {
	out := make(chan []Event, subscriberBuffer)
	go b.receive(ctx, out)
	return out
}

// Close implements Bus.
func (b *RedisBus) Close() error { return b.client.Close() }

// Health check of a subscription: after this long without a message the
// subscriber pings; without an answer by the next check it reconnects.
const redisHealthInterval = 15 * time.Second

// receive keeps a subscription open until ctx ends, reconnecting with
// backoff.
func (b *RedisBus) receive(ctx context.Context, out chan<- []Event) {
	defer close(out)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		connected, err := b.subscribeOnce(ctx, out)
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = 100 * time.Millisecond
		}
		if ok, suppressed := b.errs.Allow(); ok {
			b.log.Warn("redis subscription lost; reconnecting (live streams catch up from the database meanwhile)",
				"channel", b.channel, "error", err, "retry_in", backoff, "suppressed", suppressed)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// subscribeOnce runs one subscription until it fails; connected says
// whether it was confirmed by the server.
func (b *RedisBus) subscribeOnce(ctx context.Context, out chan<- []Event) (connected bool, err error) {
	ps := b.client.Subscribe(ctx, b.channel)
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks a pending read
	defer stop()
	msg, err := ps.ReceiveTimeout(ctx, redisTimeout)
	if err != nil {
		return false, err
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return false, fmt.Errorf("subscribing to %s: unexpected reply %T", b.channel, msg)
	}
	offer(out, nil) // announcements may have been lost before this
	awaitingPong := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, redisHealthInterval)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return true, err
			}
			if awaitingPong {
				return true, errors.New("redis did not answer a ping")
			}
			if err := ps.Ping(ctx); err != nil {
				return true, err
			}
			awaitingPong = true
			continue
		}
		awaitingPong = false
		m, ok := msg.(*redis.Message)
		if !ok {
			continue // a pong or a subscription confirmation
		}
		var wire Message
		if err := json.Unmarshal([]byte(m.Payload), &wire); err != nil {
			b.log.Debug("undecodable message on the event channel", "error", err)
			offer(out, nil) // still a hint to look again
			continue
		}
		offer(out, []Event{wire.Event()})
	}
}

// offer sends without blocking; a full subscriber misses the announcement.
func offer(out chan<- []Event, evs []Event) {
	select {
	case out <- evs:
	default:
	}
}
