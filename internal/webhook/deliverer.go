package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computeserver/compute/internal/netguard"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/telemetry"
)

// Config configures a Deliverer. Zero values take the documented defaults.
type Config struct {
	// Concurrency is how many requests this deliverer has in flight at
	// once (default 8).
	Concurrency int
	// PerDestination is how many requests may be in flight to one
	// destination (scheme, host and port; see Destination) at once,
	// counted across every deliverer sharing the database (default 2).
	// Claims take turns across destinations, so one slow or dead
	// receiver cannot hold every slot.
	PerDestination int
	// BreakerThreshold is how many consecutive failed attempts
	// (connection errors, timeouts, 5xx, 429) to one destination open its
	// circuit (default 5).
	BreakerThreshold int
	// BreakerCooldown is how long a circuit first stays open (default
	// 30s): the destination's waiting deliveries are postponed to its
	// end, without counting an attempt. Then one probe is sent; a failed
	// probe opens the circuit again for twice as long.
	BreakerCooldown time.Duration
	// BreakerMaxCooldown caps the cool-down (default 10m, at least
	// BreakerCooldown).
	BreakerMaxCooldown time.Duration
	// PollInterval is how often an idle deliverer looks for due
	// deliveries, such as retries, that no notification announced
	// (default 1s). New events wake it at once.
	PollInterval time.Duration
	// Timeout bounds one request, from connecting to reading the
	// response snippet (default 10s).
	Timeout time.Duration
	// Lease is how long a claimed delivery is hidden from other senders
	// (default 60s): a sender that dies mid-request leaves it due again
	// after the lease. It is raised to at least 1.5×Timeout, so a live
	// sender's request ends before anyone else may send it again.
	Lease time.Duration
	// RetryMin is the delay before the first retry; retry n waits
	// RetryMin×2^(n-1), up to 25% more for jitter (default 30s).
	RetryMin time.Duration
	// RetryMax caps the delay between two attempts (default 4h).
	RetryMax time.Duration
	// MaxAttempts bounds the attempts of one delivery (default 15).
	MaxAttempts int
	// Window stops retries whose next attempt would fall later than this
	// after the event, or after the last redelivery (default 24h).
	Window time.Duration
	// Policy decides which addresses requests may connect to; it is
	// checked on the resolved address at connect time. A refused
	// destination fails the delivery at once.
	Policy netguard.Policy
	// Signer signs requests per the Standard Webhooks specification; nil
	// sends them unsigned (with webhook-id and webhook-timestamp only).
	Signer *Signer
	// UserAgent is sent with every request (default compute-server/dev).
	UserAgent string
	// Observe, when set, is told the result of every attempt recorded:
	// the delivery's status after it (delivered, pending for a retry,
	// failed, stopped). It must not block (the Prometheus metrics).
	Observe func(result string)
}

func (c *Config) setDefaults() {
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.PerDestination <= 0 {
		c.PerDestination = 2
	}
	if c.BreakerThreshold <= 0 {
		c.BreakerThreshold = 5
	}
	if c.BreakerCooldown <= 0 {
		c.BreakerCooldown = 30 * time.Second
	}
	if c.BreakerMaxCooldown <= 0 {
		c.BreakerMaxCooldown = 10 * time.Minute
	}
	c.BreakerMaxCooldown = max(c.BreakerMaxCooldown, c.BreakerCooldown)
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 60 * time.Second
	}
	c.Lease = max(c.Lease, c.Timeout*3/2)
	if c.RetryMin <= 0 {
		c.RetryMin = 30 * time.Second
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 4 * time.Hour
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 15
	}
	if c.Window <= 0 {
		c.Window = 24 * time.Hour
	}
	if c.UserAgent == "" {
		c.UserAgent = "compute-server/dev"
	}
}

// claimGap is the least time between two claims, so a burst of event
// notifications costs one claim, not one per event.
const claimGap = 20 * time.Millisecond

// drainLimit is how much of a response body is read past the snippet, so
// the connection can be reused; larger bodies close it.
const drainLimit = 64 << 10

// Deliverer sends due webhook deliveries: it claims them from the store
// under a lease, fairly across destinations and at most PerDestination in
// flight per destination, posts each event body to its URL, and records
// every attempt with the delivery's next state (delivered on 2xx, stopped
// on 410, else retried with exponential backoff until the attempts or the
// window run out). A destination that keeps failing opens its circuit
// breaker (see Config.BreakerThreshold). Several deliverers, in one
// process or many, may share a database.
type Deliverer struct {
	cfg      Config
	store    store.Deliveries
	client   *http.Client
	log      *slog.Logger
	breakers *breakers

	wake     chan struct{}
	freed    chan struct{}
	inflight atomic.Int64
	sends    sync.WaitGroup

	mu      sync.Mutex
	started bool
	stopped bool
	stop    func()
}

// New returns a deliverer; call Start to run it.
func New(cfg Config, st store.Deliveries, log *slog.Logger) *Deliverer {
	cfg.setDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Policy.Setting == "" {
		cfg.Policy.Setting = "COMPUTE_WEBHOOK_ALLOW_PRIVATE"
	}
	client := netguard.NewHTTPClient(cfg.Policy, cfg.Timeout)
	// A webhook is answered where it was sent: a redirect is an answer
	// (a failed attempt), not a destination to follow.
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// Each attempt's request is a client span, with traceparent, of the
	// attempt's webhook.deliver span.
	client.Transport = telemetry.Transport(client.Transport)
	return &Deliverer{
		cfg:    cfg,
		store:  st,
		client: client,
		log:    log.With("component", "webhook"),
		wake:   make(chan struct{}, 1),
		freed:  make(chan struct{}, 1),

		breakers: newBreakers(cfg.BreakerThreshold, cfg.BreakerCooldown, cfg.BreakerMaxCooldown),
	}
}

// Notify wakes the deliverer to look for due deliveries now. It never
// blocks.
func (d *Deliverer) Notify() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Start begins delivering in the background until Stop. ctx gives values
// only; its cancellation does not stop the deliverer.
func (d *Deliverer) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.stopped {
		return errors.New("webhook: deliverer already started or stopped")
	}
	d.started = true
	base := context.WithoutCancel(ctx)
	claimCtx, stopClaiming := context.WithCancel(base)
	listenCtx, stopListening := context.WithCancel(base)
	notes := d.store.Subscribe(listenCtx)
	var claiming, listening sync.WaitGroup
	claiming.Go(func() { d.claimLoop(claimCtx, base) })
	listening.Go(func() { d.listen(listenCtx, notes) })
	d.stop = func() {
		stopClaiming()
		claiming.Wait()
		d.sends.Wait() // each bounded by Timeout
		stopListening()
		listening.Wait()
		d.client.CloseIdleConnections()
	}
	d.log.Info("webhook deliverer started", "concurrency", d.cfg.Concurrency, "per_destination", d.cfg.PerDestination, "lease", d.cfg.Lease,
		"retry_min", d.cfg.RetryMin, "max_attempts", d.cfg.MaxAttempts, "window", d.cfg.Window, "signed", d.cfg.Signer != nil)
	return nil
}

// Stop stops claiming, lets the requests in flight finish (each within
// Timeout) and records them. It is idempotent.
func (d *Deliverer) Stop() {
	d.mu.Lock()
	stop, already := d.stop, d.stopped
	d.stopped = true
	d.mu.Unlock()
	if stop == nil || already {
		return
	}
	stop()
}

// listen turns the store's notifications into wake-ups: new events may
// have deliveries, and a wake-up announces other due work (a redelivery).
func (d *Deliverer) listen(ctx context.Context, notes <-chan store.Notification) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-notes:
			if n.Kind == store.NotifyEvents || n.Kind == store.NotifyWake {
				d.Notify()
			}
		}
	}
}

// claimLoop claims as many due deliveries as there are free slots, and
// waits for a wake-up, a freed slot or the poll tick. A freed slot may
// have been a destination's last: claiming again at once lets that
// destination's next delivery go.
func (d *Deliverer) claimLoop(ctx, sendCtx context.Context) {
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
	var last time.Time
	for {
		if free := d.cfg.Concurrency - int(d.inflight.Load()); free > 0 {
			if wait := claimGap - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
			last = time.Now()
			skip, probe := d.breakers.filter(last)
			ds, err := d.store.ClaimDeliveries(ctx, store.DeliveryClaim{Limit: free, Lease: d.cfg.Lease,
				PerDestination: d.cfg.PerDestination, Skip: skip, Probe: probe})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				d.log.Warn("claiming webhook deliveries", "error", err)
			}
			for _, dl := range ds {
				d.breakers.claimed(dl.Destination, last)
				d.inflight.Add(1)
				d.sends.Go(func() {
					defer func() {
						d.inflight.Add(-1)
						select {
						case d.freed <- struct{}{}:
						default:
						}
					}()
					d.deliver(sendCtx, dl)
				})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-d.freed:
		case <-tick.C:
		}
	}
}

// result is what one request got.
type result struct {
	code    int
	snippet string
	err     string
	// permanent is true when retrying cannot help (a refused
	// destination, a URL that cannot be requested).
	permanent bool
}

// deliver makes one attempt of a claimed delivery and records it.
func (d *Deliverer) deliver(ctx context.Context, dl store.Delivery) {
	started := time.Now()
	a := store.DeliveryAttempt{DeliveryID: dl.ID, Attempt: dl.Attempts, StartedAt: started}
	var (
		o store.DeliveryOutcome
		v = neutral
	)
	if n := dl.Attempts - dl.AttemptsBase; n > d.cfg.MaxAttempts {
		// Earlier claims ended without recording (their sender died):
		// the budget is spent, so this claim does not send.
		a.Error = fmt.Sprintf("not sent: the %d attempts allowed were used up, some by senders that stopped before recording them", d.cfg.MaxAttempts)
		o = store.DeliveryOutcome{Status: store.DeliveryFailed}
	} else {
		sctx, span := startDeliverSpan(ctx, dl)
		r := d.send(sctx, dl, started)
		a.Duration = time.Since(started)
		a.StatusCode, a.ResponseSnippet, a.Error = r.code, r.snippet, r.err
		o = d.outcome(dl, r, time.Now())
		v = verdictOf(r)
		endDeliverSpan(span, r, o)
	}
	if d.record(ctx, dl, a, o) && d.cfg.Observe != nil {
		d.cfg.Observe(string(o.Status))
	}
	d.judge(ctx, dl.Destination, v)
}

// judge tells the destination's circuit breaker what an attempt said
// (after the attempt is recorded, so a delivery being retried is among
// those postponed). When the circuit opens, the destination's waiting
// deliveries are postponed to the end of the cool-down without counting
// an attempt; those whose retry window would end before it fail.
func (d *Deliverer) judge(ctx context.Context, dest string, v verdict) {
	now := time.Now()
	wasOpen := d.breakers.isOpen(dest)
	until, opened := d.breakers.record(dest, v, now)
	log := d.log.With("destination", dest)
	if !opened {
		if wasOpen && v == up {
			log.Info("webhook destination answered; circuit closed")
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	postponed, failed, err := d.store.PostponeDeliveries(ctx, store.Postponement{
		Destination: dest, Until: until, FailWindowsBefore: until.Add(-d.cfg.Window),
		Reason: "not sent: the destination kept failing (circuit open) until after the retry window ended",
	})
	if err != nil {
		// This process still skips the destination until the cool-down
		// ends; other senders may try it meanwhile.
		log.Warn("postponing the deliveries of a failing webhook destination", "error", err)
	}
	log.Warn("webhook destination keeps failing; circuit open", "until", until, "cooldown", until.Sub(now),
		"postponed", postponed, "failed", failed)
}

// send posts the event body to the delivery's URL.
func (d *Deliverer) send(ctx context.Context, dl store.Delivery, at time.Time) result {
	body := dl.Body
	var buf bytes.Buffer
	if json.Compact(&buf, body) == nil {
		body = buf.Bytes()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(body))
	if err != nil {
		return result{err: "invalid webhook URL: " + err.Error(), permanent: true}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", d.cfg.UserAgent)
	// webhook-id is the event id: the same on every attempt, so a
	// receiver can drop what it has already processed.
	id := strconv.FormatInt(dl.EventID, 10)
	if len(dl.Secrets) > 0 {
		// An endpoint's delivery is signed with the endpoint's secrets.
		sig, err := SignAll(dl.Secrets, id, at, body)
		if err != nil {
			return result{err: "the webhook endpoint's secret cannot sign: " + err.Error(), permanent: true}
		}
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
	} else if d.cfg.Signer != nil {
		d.cfg.Signer.SetHeaders(req.Header, id, at, body)
	} else {
		req.Header.Set("webhook-id", id)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	}
	res, err := d.client.Do(req)
	if err != nil {
		return result{err: errorText(err, d.cfg.Timeout), permanent: errors.Is(err, netguard.ErrForbiddenDestination)}
	}
	defer res.Body.Close()
	r := result{code: res.StatusCode}
	snippet, err := io.ReadAll(io.LimitReader(res.Body, store.MaxSnippetBytes))
	r.snippet = string(snippet)
	if err != nil {
		r.err = "reading the response: " + errorText(err, d.cfg.Timeout)
		return r
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, drainLimit))
	return r
}

// errorText describes a request error without the URL, which may carry a
// receiver's token in its query.
func errorText(err error, timeout time.Duration) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no answer within %s: %v", timeout, ue.Err)
		}
		err = ue.Err
	}
	return err.Error()
}

// outcome decides a delivery's next state after an attempt at now.
func (d *Deliverer) outcome(dl store.Delivery, r result, now time.Time) store.DeliveryOutcome {
	switch {
	case r.code >= 200 && r.code < 300:
		return store.DeliveryOutcome{Status: store.DeliveryDelivered}
	case r.code == http.StatusGone:
		return store.DeliveryOutcome{Status: store.DeliveryStopped}
	case r.permanent:
		return store.DeliveryOutcome{Status: store.DeliveryFailed}
	}
	n := dl.Attempts - dl.AttemptsBase
	if n >= d.cfg.MaxAttempts {
		return store.DeliveryOutcome{Status: store.DeliveryFailed}
	}
	from := dl.CreatedAt
	if dl.RedeliveredAt != nil {
		from = *dl.RedeliveredAt
	}
	next := now.Add(d.backoff(n))
	if next.After(from.Add(d.cfg.Window)) {
		return store.DeliveryOutcome{Status: store.DeliveryFailed}
	}
	return store.DeliveryOutcome{Status: store.DeliveryPending, NextAttemptAt: next}
}

// backoff is the delay after failed attempt n (1 for the first):
// RetryMin×2^(n-1) plus up to 25% jitter, never more than RetryMax (at
// the cap the jitter goes below it, so retries still spread out).
func (d *Deliverer) backoff(n int) time.Duration {
	delay := d.cfg.RetryMin
	for i := 1; i < n && delay < d.cfg.RetryMax; i++ {
		delay *= 2
	}
	delay += rand.N(delay/4 + 1)
	if delay > d.cfg.RetryMax {
		delay = d.cfg.RetryMax - rand.N(d.cfg.RetryMax/5+1)
	}
	return delay
}

// record writes the attempt and the delivery's next state. A failure to
// record leaves the delivery claimed until its lease ends; it is then
// sent again (deliveries are at least once). It reports whether the
// outcome was written.
func (d *Deliverer) record(ctx context.Context, dl store.Delivery, a store.DeliveryAttempt, o store.DeliveryOutcome) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	log := d.log.With("delivery_id", dl.ID, "event_id", dl.EventID, "task_id", dl.TaskID, "attempt", a.Attempt)
	err := d.store.RecordDeliveryAttempt(ctx, a, o)
	switch {
	case errors.Is(err, store.ErrDeliveryClaimLost):
		log.Info("webhook attempt recorded, but the delivery moved on meanwhile", "status_code", a.StatusCode, "error", err)
		return false
	case err != nil:
		log.Warn("recording a webhook attempt; the delivery will be sent again after its lease", "error", err)
		return false
	}
	attrs := []any{"status_code", a.StatusCode, "duration", a.Duration}
	if a.Error != "" {
		attrs = append(attrs, "error", a.Error)
	}
	switch o.Status {
	case store.DeliveryDelivered:
		log.Debug("webhook delivered", attrs...)
	case store.DeliveryPending:
		log.Info("webhook attempt failed; retry scheduled", append(attrs, "next_attempt_at", o.NextAttemptAt)...)
	case store.DeliveryStopped:
		log.Info("webhook receiver answered 410 Gone; delivery stopped", attrs...)
	default:
		log.Warn("webhook delivery failed for good", attrs...)
	}
	return true
}
