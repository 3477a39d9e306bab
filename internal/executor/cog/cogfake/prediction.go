package cogfake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// prediction is one prediction in flight.
type prediction struct {
	id       string
	input    json.RawMessage
	webhook  string
	filter   []string
	ctx      context.Context
	stop     context.CancelFunc // ends the run
	hookStop context.CancelFunc // ends webhook delivery (restart only)
	advance  chan struct{}
	done     chan struct{} // closed when terminal or lost
	hook     *fakekit.Sender

	// Guarded by Fake.mu.
	status      string
	output      any
	errMsg      string
	logs        []string
	createdAt   time.Time
	startedAt   time.Time
	completedAt time.Time
	final       map[string]any
	lost        bool
}

// kill forgets p as a restarting container does: no webhook, no result.
// The caller holds Fake.mu.
func (p *prediction) kill() {
	p.lost = true
	p.stop()
	p.hookStop()
	close(p.done)
}

// predictBody is the request body of §3.2.
type predictBody struct {
	ID                  string          `json:"id"`
	Input               json.RawMessage `json:"input"`
	Webhook             string          `json:"webhook"`
	WebhookEventsFilter []string        `json:"webhook_events_filter"`
	Context             map[string]any  `json:"context"`
}

// validation answers 422 with FastAPI's detail list (§3.2 Errors).
func validation(w http.ResponseWriter, loc []string, msg, typ string) {
	fakekit.WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{
		"detail": []map[string]any{{"loc": loc, "msg": msg, "type": typ}},
	})
}

// failed answers {"error", "status":"failed"} (§3.2 Errors: 409, 503).
func failed(w http.ResponseWriter, code int, msg string) {
	fakekit.WriteJSON(w, code, map[string]string{"error": msg, "status": "failed"})
}

// predict starts a prediction: POST /predictions or the idempotent PUT
// /predictions/{id} (§3.2).
func (f *Fake) predict(w http.ResponseWriter, r *http.Request, pathID string) {
	raw, err := io.ReadAll(r.Body)
	rec := Request{Method: r.Method, ID: pathID, Body: raw, Header: r.Header.Clone(), At: time.Now()}
	record := func(code int) {
		rec.Code = code
		f.requests.Add(rec)
	}
	var body predictBody
	if err != nil || json.Unmarshal(raw, &body) != nil {
		record(http.StatusUnprocessableEntity)
		validation(w, []string{"body"}, "Input should be a valid JSON object", "json_invalid")
		return
	}
	if pathID != "" && body.ID != "" && body.ID != pathID {
		record(http.StatusUnprocessableEntity)
		validation(w, []string{"body", "id"}, "prediction ID must match the ID supplied in the URL", "value_error")
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		// §3.2: SSE only for @streaming models; this one is not.
		record(http.StatusNotAcceptable)
		fakekit.WriteJSON(w, http.StatusNotAcceptable, map[string]string{"detail": "model does not support streaming"})
		return
	}
	async := strings.Contains(r.Header.Get("Prefer"), "respond-async")

	f.mu.Lock()
	rec.ID = pathID
	if rec.ID == "" {
		rec.ID = body.ID
	}
	if p, ok := f.preds[rec.ID]; ok && rec.ID != "" {
		// §3.2 PUT: "if {id} is still in flight returns 202 with its
		// current state" — no second run.
		view := f.viewLocked(p)
		f.mu.Unlock()
		record(http.StatusAccepted)
		fakekit.WriteJSON(w, http.StatusAccepted, view)
		return
	}
	code, msg := f.refuseLocked()
	if code == 0 {
		if field, ok := f.missingInput(body.Input); !ok {
			f.mu.Unlock()
			record(http.StatusUnprocessableEntity)
			validation(w, []string{"body", "input", field}, "Field required", "missing")
			return
		}
	}
	if code != 0 {
		f.mu.Unlock()
		record(code)
		failed(w, code, msg)
		return
	}
	if rec.ID == "" {
		f.seq++
		rec.ID = fmt.Sprintf("cog-%06d", f.seq)
	}
	p := f.startLocked(rec.ID, body)
	view := f.viewLocked(p)
	f.mu.Unlock()
	f.changes.Notify()

	if async {
		record(http.StatusAccepted)
		fakekit.WriteJSON(w, http.StatusAccepted, view)
		return
	}
	record(http.StatusOK)
	select {
	case <-p.done:
	case <-r.Context().Done():
		return
	}
	f.mu.Lock()
	final, lost := p.final, p.lost
	f.mu.Unlock()
	if lost || final == nil {
		panic(http.ErrAbortHandler) // the container went away mid-request: drop the connection
	}
	fakekit.WriteJSON(w, http.StatusOK, final)
}

// refuseLocked says why a new prediction cannot start: 503 until setup
// succeeded or while unhealthy, 409 when every slot is busy (§3.2 Errors).
func (f *Fake) refuseLocked() (int, string) {
	switch f.healthLocked() {
	case HealthReady:
		return 0, ""
	case HealthBusy:
		return http.StatusConflict, "At capacity - all prediction slots busy"
	case HealthStarting:
		return http.StatusServiceUnavailable, "Setup has not finished yet"
	}
	return http.StatusServiceUnavailable, "Model is not ready: " + f.healthLocked()
}

// missingInput checks that input is an object with every RequiredInputs
// field, and names the first missing one.
func (f *Fake) missingInput(input json.RawMessage) (string, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(input, &fields) != nil || fields == nil {
		return "", false
	}
	for _, name := range f.cfg.RequiredInputs {
		if _, ok := fields[name]; !ok {
			return name, false
		}
	}
	return "", true
}

// startLocked registers and runs a prediction.
func (f *Fake) startLocked(id string, body predictBody) *prediction {
	ctx, stop := context.WithCancel(f.ctx)
	hookCtx, hookStop := context.WithCancel(f.ctx)
	p := &prediction{
		id: id, input: body.Input, webhook: body.Webhook, filter: body.WebhookEventsFilter,
		ctx: ctx, stop: stop, hookStop: hookStop,
		advance: fakekit.NewAdvance(), done: make(chan struct{}),
		status: StatusStarting, createdAt: time.Now(),
	}
	f.preds[id] = p
	if p.webhook != "" {
		p.hook = f.newSender(p)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			p.hook.Run(hookCtx)
		}()
	}
	f.wg.Add(1)
	go f.run(p)
	return p
}

// viewLocked is the prediction object a webhook or response carries
// (§3.2: "body = prediction object").
func (f *Fake) viewLocked(p *prediction) map[string]any {
	v := map[string]any{
		"id": p.id, "input": p.input, "output": p.output, "logs": strings.Join(p.logs, ""), "error": nil,
		"status": p.status, "created_at": stamp(p.createdAt), "started_at": stamp(p.startedAt),
		"completed_at": stamp(p.completedAt), "metrics": map[string]any{},
	}
	if p.errMsg != "" {
		v["error"] = p.errMsg
	}
	if p.webhook != "" {
		v["webhook"] = p.webhook
		if p.filter != nil {
			v["webhook_events_filter"] = p.filter
		}
	}
	if !p.completedAt.IsZero() && !p.startedAt.IsZero() {
		v["metrics"] = map[string]any{"predict_time": p.completedAt.Sub(p.startedAt).Seconds()}
	}
	return v
}

// cancel answers 200 for a prediction in flight, which ends canceled, and
// 404 otherwise (§3.2).
func (f *Fake) cancel(w http.ResponseWriter, id string) {
	f.mu.Lock()
	f.cancels.Add(id)
	p, ok := f.preds[id]
	if ok {
		f.finishLocked(p, StatusCanceled, "")
	}
	f.mu.Unlock()
	if !ok {
		fakekit.WriteJSON(w, http.StatusNotFound, map[string]string{"detail": "Prediction not found"})
		return
	}
	f.changes.Notify()
	fakekit.WriteJSON(w, http.StatusOK, map[string]any{})
}

// run processes p: processing at once (start webhook), LogLines log lines,
// the output, then the terminal status (§3.2 webhooks).
func (f *Fake) run(p *prediction) {
	defer f.wg.Done()
	f.mu.Lock()
	if p.lost || p.status != StatusStarting {
		f.mu.Unlock()
		return // lost in a restart or canceled before it started
	}
	p.status, p.startedAt = StatusProcessing, time.Now()
	f.emitLocked(p, EventStart)
	f.mu.Unlock()
	f.changes.Notify()

	step := f.cfg.RunTime
	if step > 0 {
		step /= time.Duration(f.cfg.LogLines + 1)
	}
	for i := range f.cfg.LogLines {
		if fakekit.Phase(step, p.advance, p.ctx.Done(), nil) == fakekit.Interrupted {
			return // canceled, lost in a restart, or the fake closed
		}
		f.mu.Lock()
		p.logs = append(p.logs, fmt.Sprintf("step %d/%d\n", i+1, f.cfg.LogLines))
		f.emitLocked(p, EventLogs)
		f.mu.Unlock()
		f.changes.Notify()
	}
	if fakekit.Phase(step, p.advance, p.ctx.Done(), nil) == fakekit.Interrupted {
		return
	}
	out := Outcome{}
	if f.cfg.Outcome != nil {
		var rec Request
		rec.ID, rec.Body = p.id, p.input
		out = f.cfg.Outcome(rec)
	}
	if out.Error == "" && out.Output == nil {
		out.Output = render(p)
	}
	f.mu.Lock()
	if p.status == StatusProcessing && !p.lost {
		if out.Error != "" {
			f.finishLocked(p, StatusFailed, out.Error)
		} else {
			p.output = out.Output
			f.emitLocked(p, EventOutput)
			f.finishLocked(p, StatusSucceeded, "")
		}
	}
	f.mu.Unlock()
	f.changes.Notify()
}

// finishLocked makes p terminal, sends (or, with DropCompleted, loses) the
// completed webhook and forgets p (§3.2 "completed predictions are
// forgotten").
func (f *Fake) finishLocked(p *prediction, status, errMsg string) {
	p.status, p.errMsg, p.completedAt = status, errMsg, time.Now()
	p.stop()
	p.final = f.viewLocked(p)
	if f.cfg.DropCompleted {
		if p.hook != nil {
			p.hook.Finish()
		}
	} else {
		f.emitLocked(p, EventCompleted)
	}
	delete(f.preds, p.id)
	close(p.done)
}

// render makes the default output (fakekit.Outputs) as data URLs.
func render(p *prediction) any {
	var urls []string
	for _, data := range fakekit.Outputs(p.id, p.input) {
		urls = append(urls, "data:image/png;base64,"+base64.StdEncoding.EncodeToString(data))
	}
	return urls
}

// newSender makes p's webhook sender (§3.2 Webhooks): the Bearer
// WEBHOOK_AUTH_TOKEN, logs and output throttled, the terminal webhook
// retried on 429/500/502/503/504, the others fire-and-forget.
func (f *Fake) newSender(p *prediction) *fakekit.Sender {
	return &fakekit.Sender{
		URL: p.webhook, Filter: p.filter,
		Throttled: func(e string) bool { return e == EventLogs || e == EventOutput },
		Throttle:  f.cfg.WebhookThrottle,
		Retries:   f.cfg.WebhookRetries, Backoff: f.cfg.WebhookBackoff,
		Retry: func(code int, err error) bool {
			switch code {
			case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
				http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				return true
			}
			return err != nil
		},
		MessagePrefix: p.id + "-",
		Header: func(string, time.Time, []byte) http.Header {
			h := http.Header{}
			if f.cfg.WebhookAuthToken != "" {
				h.Set("Authorization", "Bearer "+f.cfg.WebhookAuthToken)
			}
			return h
		},
		Client: f.cfg.Client,
		JobID:  p.id,
		Record: f.deliveries.Add,
	}
}

// emitLocked queues webhook event name with the object as it is now.
func (f *Fake) emitLocked(p *prediction, name string) {
	if p.hook != nil {
		p.hook.EmitObject(name, f.viewLocked(p))
	}
}
