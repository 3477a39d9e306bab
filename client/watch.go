package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Event is one event of a task: a status change or a progress report, the
// body a webhook receives, with the stream's event id.
type Event struct {
	// ID is the event id: it increases with the order of events.
	ID int64 `json:"-"`
	// EventType is "<task type>_status_update" or
	// "<task type>_progress_update".
	EventType      string         `json:"event_type"`
	TaskID         string         `json:"task_id"`
	TaskType       string         `json:"task_type"`
	Status         Status         `json:"status"`
	EntityID       string         `json:"entity_id"`
	OriginInstance string         `json:"origin_instance"`
	OriginZone     string         `json:"origin_zone"`
	OriginVersion  string         `json:"origin_version"`
	Timestamp      time.Time      `json:"timestamp"`
	Metadata       map[string]any `json:"metadata"`
	Progress       float64        `json:"progress"`
	ErrorMessage   string         `json:"error_message,omitempty"`
	ErrorCategory  string         `json:"error_category,omitempty"`
	StartedAt      *time.Time     `json:"started_at"`
	CompletedAt    *time.Time     `json:"completed_at"`
	// Data is the event's JSON body as received.
	Data json.RawMessage `json:"-"`
}

// IsStatus reports whether the event is a status change (not a progress
// report).
func (e *Event) IsStatus() bool { return strings.HasSuffix(e.EventType, "_status_update") }

// Stage is what the task's processor said it was doing ("rendering"), from
// the event's metadata; "" when it said nothing.
func (e *Event) Stage() string {
	s, _ := e.Metadata["stage"].(string)
	return s
}

// Terminal reports whether the event is the task's last: a status change
// to completed, failed or cancelled.
func (e *Event) Terminal() bool { return e.IsStatus() && e.Status.Terminal() }

// WatchOptions tune Watch; the zero value (or nil) is fine.
type WatchOptions struct {
	// After starts after this event id (0: from the task's creation).
	After int64
	// IdleTimeout drops a connection on which nothing (not even a
	// keep-alive comment, which the server sends every 15 s by default)
	// arrived for this long, and reconnects. Default 1 minute.
	IdleTimeout time.Duration
	// MaxRetries is how many connections in a row may fail (refused, cut
	// before any event) before Watch gives up with the last error.
	// Default 10; negative: no limit (the context ends it).
	MaxRetries int
	// MaxBackoff caps the delay between reconnections, which starts at
	// the stream's retry value (default 250 ms) and doubles with each
	// failure. Default 10 s.
	MaxBackoff time.Duration
}

func (o *WatchOptions) withDefaults() WatchOptions {
	w := WatchOptions{}
	if o != nil {
		w = *o
	}
	if w.IdleTimeout <= 0 {
		w.IdleTimeout = time.Minute
	}
	if w.MaxRetries == 0 {
		w.MaxRetries = 10
	}
	if w.MaxBackoff <= 0 {
		w.MaxBackoff = 10 * time.Second
	}
	return w
}

// defaultRetry is the first reconnection delay when the stream sets none.
const defaultRetry = 250 * time.Millisecond

// healthyConn is how long a connection must stay up to count as a success
// even without events (a long pending task's stream carries only
// keep-alives).
const healthyConn = 10 * time.Second

// Watch streams a task's events (GET /api/v1/tasks/{id}/events) in id
// order, each once, until the task's terminal status event, which is the
// last one yielded. When the connection drops, Watch reconnects with
// Last-Event-ID, after a growing delay, so the server replays what was
// missed. It yields an error and stops when the server refuses the stream
// for good (404, 401, 422: a *Problem), when MaxRetries connections in a
// row fail, or when ctx ends (ctx.Err()). Watching a task that has
// already finished yields its events up to the end.
func (c *Client) Watch(ctx context.Context, id string, opts *WatchOptions) iter.Seq2[Event, error] {
	return c.watch(ctx, id, opts, false)
}

// watch is Watch; with refusedEnds, a stream the server refuses (any
// error answer, 429 and 503 included) ends it at once with the *Problem.
func (c *Client) watch(ctx context.Context, id string, opts *WatchOptions, refusedEnds bool) iter.Seq2[Event, error] {
	o := opts.withDefaults()
	return func(yield func(Event, error) bool) {
		w := &watcher{c: c, id: id, o: o, last: o.After, retry: defaultRetry, refusedEnds: refusedEnds}
		w.run(ctx, yield)
	}
}

// watcher is the state of one Watch.
type watcher struct {
	c     *Client
	id    string
	o     WatchOptions
	last  int64         // the last event id received
	retry time.Duration // the stream's retry value
	// refusedEnds ends the watch at the first error answer.
	refusedEnds bool
}

// errStop ends a connection because the consumer stopped or the task
// ended.
var errStop = errors.New("stop")

func (w *watcher) run(ctx context.Context, yield func(Event, error) bool) {
	failures := 0
	for {
		start := time.Now()
		got, err := w.connect(ctx, yield)
		if errors.Is(err, errStop) {
			return
		}
		if ctx.Err() != nil {
			yield(Event{}, ctx.Err())
			return
		}
		var p *Problem
		if errors.As(err, &p) && (w.refusedEnds || !retryable(p.Status)) || errors.Is(err, bufio.ErrTooLong) || errors.Is(err, errNotStream) {
			yield(Event{}, err)
			return
		}
		if err == nil && got == 0 {
			// The server ended the stream without anything new: the
			// task had already finished before our position.
			t, gerr := w.c.Get(ctx, w.id)
			if gerr == nil && t.Status.Terminal() {
				return
			}
			err = errors.New("the stream ended before the task did")
		}
		if got > 0 || time.Since(start) >= healthyConn {
			failures = 0
		} else {
			failures++
		}
		if w.o.MaxRetries > 0 && failures >= w.o.MaxRetries {
			yield(Event{}, fmt.Errorf("client: watching task %s: %d connections failed, the last: %w", w.id, failures, err))
			return
		}
		delay := w.backoff(failures)
		if p != nil && p.RetryAfter > delay {
			delay = p.RetryAfter
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			yield(Event{}, ctx.Err())
			return
		case <-t.C:
		}
	}
}

// retryable reports whether a refused stream may be asked for again.
func retryable(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500
}

// backoff is the delay before the next connection: the stream's retry
// value, doubled for each failure in a row, capped, with ±20% jitter.
func (w *watcher) backoff(failures int) time.Duration {
	d := w.retry
	for range min(failures, 20) {
		d *= 2
		if d >= w.o.MaxBackoff {
			break
		}
	}
	d = min(d, w.o.MaxBackoff)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// errNotStream is an answer that is not an event stream.
var errNotStream = errors.New("the answer is not an event stream")

// connect opens the stream once and yields its events; it returns how
// many it yielded and why it ended (errStop when Watch is over).
func (w *watcher) connect(ctx context.Context, yield func(Event, error) bool) (int, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, w.c.url("/api/v1/tasks/"+escape(w.id)+"/events", nil), nil)
	if err != nil {
		yield(Event{}, err)
		return 0, errStop
	}
	w.c.authorize(req)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if w.last > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(w.last, 10))
	}
	idle := time.AfterFunc(w.o.IdleTimeout, cancel)
	defer idle.Stop()
	res, err := w.c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, readProblem(res)
	}
	if ct, _, _ := mime.ParseMediaType(res.Header.Get("Content-Type")); ct != "text/event-stream" {
		return 0, fmt.Errorf("client: watching task %s: %w (%s)", w.id, errNotStream, res.Header.Get("Content-Type"))
	}
	r := newSSEReader(res.Body)
	r.onLine = func() { idle.Reset(w.o.IdleTimeout) }
	got := 0
	for {
		se, err := r.next()
		if r.retry >= 0 {
			w.retry = max(time.Duration(r.retry)*time.Millisecond, 10*time.Millisecond)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return got, err
		}
		ev, ok := w.event(se)
		if !ok {
			continue
		}
		got++
		if !yield(ev, nil) || ev.Terminal() {
			return got, errStop
		}
	}
}

// event decodes a dispatched SSE event; one already seen (an id not after
// the last) or without a JSON body is skipped.
func (w *watcher) event(se sseEvent) (Event, bool) {
	id, err := strconv.ParseInt(se.id, 10, 64)
	if err != nil || id <= w.last {
		return Event{}, false
	}
	var ev Event
	if err := json.Unmarshal([]byte(se.data), &ev); err != nil {
		return Event{}, false
	}
	w.last = id
	ev.ID = id
	ev.Data = json.RawMessage(se.data)
	if ev.EventType == "" {
		ev.EventType = se.event
	}
	return ev, true
}

// WaitOptions tune Wait; the zero value (or nil) is fine.
type WaitOptions struct {
	// Watch tunes the event stream Wait follows.
	Watch *WatchOptions
	// PollInterval is how often the task is read when the stream cannot
	// be used (refused, or this server does not serve it). Default 1 s.
	PollInterval time.Duration
}

// Wait returns the task once it has finished (completed, failed or
// cancelled): it follows the task's event stream (Watch) and reads the
// task when the stream ends; when the server refuses the stream (429: too
// many streams for the key, 503) or connections keep failing, it polls GET
// /api/v1/tasks/{id} every PollInterval instead. A failed or cancelled task is
// not an error: look at its Status.
func (c *Client) Wait(ctx context.Context, id string, opts *WaitOptions) (*Task, error) {
	var o WaitOptions
	if opts != nil {
		o = *opts
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	for _, err := range c.watch(ctx, id, o.Watch, true) {
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			break // poll instead
		}
	}
	for {
		t, err := c.Get(ctx, id)
		var p *Problem
		switch {
		case err == nil && t.Status.Terminal():
			return t, nil
		case err != nil && (!errors.As(err, &p) || !retryable(p.Status)):
			return nil, err
		}
		timer := time.NewTimer(o.PollInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
}
