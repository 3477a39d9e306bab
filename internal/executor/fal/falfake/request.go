package falfake

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// Log is one log entry of a status (§2.2; level ∈ STDERR, STDOUT, ERROR,
// INFO, WARN, DEBUG).
type Log struct {
	Message   string `json:"message"`
	Level     string `json:"level"`
	Source    string `json:"source"`
	Timestamp string `json:"timestamp"`
}

// job is one queued request and its progression.
type job struct {
	sub      Submission
	app      string
	base     string // scheme://host the submit came to
	timeout  time.Duration
	mediaTTL time.Duration
	ctx      context.Context
	stop     context.CancelFunc
	advance  chan struct{}
	started  chan struct{} // closed when a runner picks it up
	seq      int

	// Guarded by Fake.mu.
	status          string
	ready           bool // its queue time is over; waiting for a runner
	cancelRequested bool
	logs            []Log
	startedAt       time.Time
	completedAt     time.Time
	// The result, set at completion.
	code      int
	body      []byte
	errMsg    string
	errorType string
	timedOut  bool
}

// urls returns the three URLs of §2.2 ("Do not build these URLs yourself").
func (j *job) urls() (status, response, cancel string) {
	response = j.base + "/" + j.app + "/requests/" + j.sub.ID
	return response + "/status", response, response + "/cancel"
}

// submit queues a request (§2.1 submit, §2.2 Submit response).
func (f *Fake) submit(w http.ResponseWriter, r *http.Request, key string, segs []string) {
	body, err := io.ReadAll(r.Body)
	now := time.Now()
	sub := Submission{
		Model: strings.Join(segs, "/"), Input: body, Header: r.Header.Clone(),
		Webhook: r.URL.Query().Get("fal_webhook"), At: now,
	}
	refuse := func(code int, v any) {
		sub.Code = code
		f.submissions.Add(sub)
		fakekit.WriteJSON(w, code, v)
	}
	app, ok := appOf(segs)
	if !ok {
		refuse(http.StatusNotFound, map[string]string{"detail": "Application not found"})
		return
	}
	sub.App = app
	if err != nil || !json.Valid(body) {
		refuse(http.StatusUnprocessableEntity, map[string]string{"detail": "Invalid JSON body"})
		return
	}
	timeout, err := parseTimeout(r.Header)
	if err != nil {
		refuse(http.StatusBadRequest, map[string]string{"detail": err.Error()})
		return
	}

	f.mu.Lock()
	if len(f.failNext) > 0 {
		code := f.failNext[0]
		f.failNext = f.failNext[1:]
		f.mu.Unlock()
		f.injected(w, &sub, code)
		return
	}
	if f.cfg.MaxConcurrentPerKey > 0 && f.activeLocked(key) >= f.cfg.MaxConcurrentPerKey {
		f.mu.Unlock()
		// Issue 11 "fal a per-key concurrency"; body per §2.2 errors ⚠.
		refuse(http.StatusTooManyRequests, map[string]string{
			"detail": fmt.Sprintf("User has reached the concurrent request limit of %d", f.cfg.MaxConcurrentPerKey),
		})
		return
	}
	f.seq++
	sub.ID = fmt.Sprintf("00000000-fa1f-4000-8000-%012d", f.seq)
	sub.Code = http.StatusOK
	ctx, stop := context.WithCancel(f.ctx)
	j := &job{
		sub: sub, app: app, base: fakekit.BaseURL(r), timeout: timeout, mediaTTL: f.mediaTTL(r.Header),
		ctx: ctx, stop: stop, advance: fakekit.NewAdvance(), started: make(chan struct{}),
		status: StatusInQueue, seq: f.seq,
	}
	f.jobs[sub.ID] = j
	f.order = append(f.order, j)
	f.submissions.Add(sub)
	view := f.viewLocked(j, false)
	f.wg.Add(1)
	f.mu.Unlock()
	f.changes.Notify()
	go f.run(j)

	w.Header().Set("x-fal-request-id", sub.ID)
	view["gateway_request_id"] = sub.ID // §2.2: equal to request_id unless fal retried
	fakekit.WriteJSON(w, http.StatusOK, view)
}

// injected answers a failure queued by FailNext.
func (f *Fake) injected(w http.ResponseWriter, sub *Submission, code int) {
	sub.Code = code
	f.submissions.Add(*sub)
	switch code {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		// §2.3: an "ingress" error has no x-fal-request-id and an nginx body.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		fmt.Fprintf(w, "<html><head><title>%d %s</title></head><body><center><h1>%d %s</h1></center><hr><center>nginx</center></body></html>\n",
			code, http.StatusText(code), code, http.StatusText(code))
	default:
		fakekit.WriteJSON(w, code, map[string]string{"detail": http.StatusText(code)})
	}
}

// activeLocked counts key's requests not COMPLETED.
func (f *Fake) activeLocked(key string) int {
	n := 0
	for _, j := range f.jobs {
		if j.status != StatusCompleted && j.sub.Header.Get("Authorization") == "Key "+key {
			n++
		}
	}
	return n
}

// viewLocked is the status body of §2.2: queue_position while IN_QUEUE,
// the logs key always (null unless asked for), metrics and error fields
// once COMPLETED.
func (f *Fake) viewLocked(j *job, withLogs bool) map[string]any {
	statusURL, responseURL, cancelURL := j.urls()
	v := map[string]any{
		"status": j.status, "request_id": j.sub.ID,
		"status_url": statusURL, "response_url": responseURL, "cancel_url": cancelURL,
		"logs": nil,
	}
	if withLogs {
		v["logs"] = append([]Log{}, j.logs...)
	}
	switch j.status {
	case StatusInQueue:
		v["queue_position"] = f.positionLocked(j)
	case StatusCompleted:
		if !j.startedAt.IsZero() {
			v["metrics"] = map[string]float64{"inference_time": j.completedAt.Sub(j.startedAt).Seconds()}
		}
		if j.errMsg != "" {
			v["error"] = j.errMsg
			if j.errorType != "" {
				v["error_type"] = j.errorType
			}
		}
	}
	return v
}

// positionLocked counts the requests of the same app queued before j.
func (f *Fake) positionLocked(j *job) int {
	n := 0
	for _, o := range f.order {
		if o == j {
			break
		}
		if o.app == j.app && o.status == StatusInQueue {
			n++
		}
	}
	return n
}

// status answers 202 while IN_QUEUE or IN_PROGRESS and 200 once COMPLETED
// (§2.2 Status).
func (f *Fake) status(w http.ResponseWriter, r *http.Request, app, id string) {
	f.mu.Lock()
	f.polls[id]++
	j, ok := f.requestOf(app, id)
	if !ok {
		f.mu.Unlock()
		f.notFound(w)
		return
	}
	view := f.viewLocked(j, r.URL.Query().Get("logs") == "1")
	done := j.status == StatusCompleted
	f.mu.Unlock()
	code := http.StatusAccepted
	if done {
		code = http.StatusOK
	}
	w.Header().Set("x-fal-request-id", id)
	fakekit.WriteJSON(w, code, view)
}

// stream sends a status object per change as server-sent events and ends
// at COMPLETED (§2.1 status stream).
func (f *Fake) stream(w http.ResponseWriter, r *http.Request, app, id string) {
	f.mu.Lock()
	_, ok := f.requestOf(app, id)
	f.mu.Unlock()
	if !ok {
		f.notFound(w)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("x-fal-request-id", id)
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	var last []byte
	for {
		changed := f.changes.Wait()
		f.mu.Lock()
		j := f.jobs[id]
		view := f.viewLocked(j, r.URL.Query().Get("logs") == "1")
		done := j.status == StatusCompleted
		f.mu.Unlock()
		data, _ := json.Marshal(view) // maps of plain values always encode
		if string(data) != string(last) {
			fmt.Fprintf(w, "data: %s\n\n", data)
			if flusher != nil {
				flusher.Flush()
			}
			last = data
		}
		if done {
			return
		}
		select {
		case <-changed:
		case <-r.Context().Done():
			return
		case <-f.ctx.Done():
			return
		}
	}
}

// result answers the output of a COMPLETED request, or the model's error
// with its status code (§2.2 "Failures are not a status"), 504 with
// X-Fal-Request-Timeout-Type: user when the start deadline passed (§2.3),
// and 404 once the result's retention is over (§2.2 Retention, §2.6 ⚠).
func (f *Fake) result(w http.ResponseWriter, app, id string) {
	f.mu.Lock()
	j, ok := f.requestOf(app, id)
	if !ok {
		f.mu.Unlock()
		f.notFound(w)
		return
	}
	if j.status != StatusCompleted {
		view := f.viewLocked(j, false)
		f.mu.Unlock()
		w.Header().Set("x-fal-request-id", id)
		if f.cfg.ResultWhileRunning == http.StatusAccepted {
			fakekit.WriteJSON(w, http.StatusAccepted, view)
		} else {
			fakekit.WriteJSON(w, f.cfg.ResultWhileRunning, map[string]string{"detail": "Request is still in progress"})
		}
		return
	}
	code, body, errorType, timedOut, completedAt := j.code, j.body, j.errorType, j.timedOut, j.completedAt
	f.mu.Unlock()
	ttl := f.cfg.ResultTTL
	if len(body) >= 10*1024 {
		ttl = f.cfg.LargeResultTTL
	}
	if time.Since(completedAt) >= ttl {
		f.notFound(w)
		return
	}
	w.Header().Set("x-fal-request-id", id)
	if errorType != "" {
		w.Header().Set("x-fal-error-type", errorType)
	}
	if timedOut {
		w.Header().Set("X-Fal-Request-Timeout-Type", "user")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// cancel answers §2.2 Cancel: 202 CANCELLATION_REQUESTED for a queued
// request (removed, never runs) or a running one (the app decides, see
// Config.IgnoreCancel), 400 ALREADY_COMPLETED, 404 NOT_FOUND (codes ⚠ per
// third-party fakes and a live canary).
func (f *Fake) cancel(w http.ResponseWriter, app, id string) {
	f.mu.Lock()
	rec := Cancel{ID: id, At: time.Now()}
	j, ok := f.requestOf(app, id)
	switch {
	case !ok:
		rec.Code, rec.Outcome = http.StatusNotFound, "NOT_FOUND"
	case j.status == StatusCompleted:
		rec.Code, rec.Outcome = http.StatusBadRequest, "ALREADY_COMPLETED"
	default:
		rec.Code, rec.Outcome = http.StatusAccepted, "CANCELLATION_REQUESTED"
		j.cancelRequested = true
		if j.status == StatusInQueue {
			f.completeLocked(j, cancelledOutcome(), nil)
			j.stop()
		} else if !f.cfg.IgnoreCancel {
			j.stop()
		}
	}
	f.cancels.Add(rec)
	f.mu.Unlock()
	f.changes.Notify()
	fakekit.WriteJSON(w, rec.Code, map[string]string{"status": rec.Outcome})
}

// cancelledOutcome is what a cancelled request's result answers: the
// reference leaves it open (§2.2 "unconfirmed"), so the fake keeps fal's
// rule that failures surface at the result: 400 with a detail.
func cancelledOutcome() Outcome {
	return Outcome{Status: http.StatusBadRequest, Detail: "Request was cancelled", ErrorType: "request_cancelled"}
}
