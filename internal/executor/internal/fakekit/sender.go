package fakekit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Callback is one webhook event of a job, with the job's object as it was
// when the event happened.
type Callback struct {
	// Event names it ("start", "output", "logs", "completed").
	Event string
	// Body is the JSON sent.
	Body []byte
	// Terminal marks the last callback of the job.
	Terminal bool
}

// Delivery is one recorded webhook attempt.
type Delivery struct {
	// ID is the job's id (a prediction id); Status the status in the body.
	ID, Status string
	// Event is the callback's event; MessageID its id, the same on every
	// attempt and duplicate of one callback.
	Event, MessageID string
	// Attempt counts from 1; Code is the receiver's answer (0 on error).
	Attempt, Code int
	// Err is the transport error, if any.
	Err string
	// Header and Body are what was sent.
	Header http.Header
	Body   []byte
	// At is when it was sent.
	At time.Time
}

// Sender delivers one job's callbacks to one URL in order, the way the
// hosted services do: events outside Filter are never sent; Throttled
// events go at most one per Throttle, and one still waiting is dropped when
// a newer one of its kind (or the terminal one) arrives, since that carries
// the newer object; only the terminal callback is retried. Set the fields,
// then call Run in a goroutine and Emit from the job.
type Sender struct {
	// URL receives the callbacks.
	URL string
	// Filter lists the events to send; nil sends every event.
	Filter []string
	// Throttled reports whether an event is limited to one per Throttle.
	Throttled func(event string) bool
	Throttle  time.Duration
	// Retries is how often a terminal callback is retried when Retry says
	// so, Backoff apart, doubling.
	Retries int
	Backoff time.Duration
	Retry   func(code int, err error) bool
	// Duplicate sends the terminal callback once more after it succeeded.
	Duplicate bool
	// MessagePrefix starts each callback's message id.
	MessagePrefix string
	// Header returns the headers of one attempt (signatures, tokens).
	Header func(messageID string, at time.Time, body []byte) http.Header
	// Client posts the callbacks.
	Client *http.Client
	// JobID fills Delivery.ID.
	JobID string
	// Record is called after every attempt.
	Record func(Delivery)

	once     sync.Once
	mu       sync.Mutex
	wake     chan struct{}
	outbox   []Callback
	finished bool // the terminal callback was emitted
	seq      int
}

func (s *Sender) init() {
	s.once.Do(func() { s.wake = make(chan struct{}, 1) })
}

// Emit queues c unless Filter leaves it out.
func (s *Sender) Emit(c Callback) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Terminal {
		s.finished = true
	}
	if s.Filter == nil || slices.Contains(s.Filter, c.Event) {
		s.outbox = append(s.outbox, c)
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// EmitObject queues event with v encoded as its body; "completed" is the
// terminal event (§3.1, §3.2: the Replicate and Cog event set).
func (s *Sender) EmitObject(event string, v any) {
	body, _ := json.Marshal(v) // the fakes' objects are maps of plain values
	s.Emit(Callback{Event: event, Body: body, Terminal: event == "completed"})
}

// Events lists deliveries as "event:status" joined by commas, for tests
// to compare in one line.
func Events(ds []Delivery) string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Event + ":" + d.Status
	}
	return strings.Join(names, ",")
}

// Run delivers callbacks until the terminal one is out (or filtered out)
// or ctx ends.
func (s *Sender) Run(ctx context.Context) {
	s.init()
	var last time.Time
	for {
		s.mu.Lock()
		batch := s.outbox
		s.outbox = nil
		finished := s.finished
		s.mu.Unlock()
		if len(batch) == 0 {
			if finished {
				return
			}
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		for i, c := range batch {
			if s.Throttled != nil && s.Throttled(c.Event) && !s.throttle(ctx, c.Event, batch[i+1:], &last) {
				continue
			}
			s.mu.Lock()
			s.seq++
			id := fmt.Sprintf("%s%d", s.MessagePrefix, s.seq)
			s.mu.Unlock()
			if s.send(ctx, c, id) && c.Terminal && s.Duplicate {
				s.send(ctx, c, id)
			}
		}
	}
}

// throttle waits until an event of kind name may go out, and reports
// false when a newer one of its kind, or the terminal one, arrived
// meanwhile (in rest or in the outbox).
func (s *Sender) throttle(ctx context.Context, name string, rest []Callback, last *time.Time) bool {
	newer := func(c Callback) bool { return c.Event == name || c.Terminal }
	for {
		wait := time.Until(last.Add(s.Throttle))
		if wait <= 0 {
			*last = time.Now()
			return true
		}
		s.mu.Lock()
		superseded := slices.ContainsFunc(rest, newer) || slices.ContainsFunc(s.outbox, newer)
		s.mu.Unlock()
		if superseded {
			return false
		}
		// A new callback wakes the wait early, to check whether it
		// supersedes this one.
		if Phase(wait, s.wake, ctx.Done(), nil) == Interrupted {
			return false
		}
	}
}

// send posts c, retrying a terminal callback, and reports whether it was
// accepted (2xx).
func (s *Sender) send(ctx context.Context, c Callback, id string) bool {
	tries := 1
	if c.Terminal {
		tries += s.Retries
	}
	backoff := s.Backoff
	for attempt := 1; attempt <= tries; attempt++ {
		at := time.Now()
		h := http.Header{}
		if s.Header != nil {
			h = s.Header(id, at, c.Body)
		}
		code, err := Post(ctx, s.Client, s.URL, h, c.Body)
		var obj struct{ Status string }
		_ = json.Unmarshal(c.Body, &obj) // a body without a status leaves it empty
		a := Delivery{
			ID: s.JobID, Status: obj.Status, Event: c.Event, MessageID: id, Attempt: attempt, Code: code,
			Header: h, Body: c.Body, At: at,
		}
		if err != nil {
			a.Err = err.Error()
		}
		if s.Record != nil {
			s.Record(a)
		}
		if err == nil && code/100 == 2 {
			return true
		}
		if attempt == tries || (s.Retry != nil && !s.Retry(code, err)) ||
			Phase(backoff, nil, ctx.Done(), nil) == Interrupted {
			return false
		}
		backoff *= 2
	}
	return false
}

// Finish ends the job without a terminal callback, as when a service loses
// it: Run returns once the callbacks already queued are out.
func (s *Sender) Finish() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finished = true
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
