package replicatefake

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// prediction is one prediction and its progression.
type prediction struct {
	create   Create
	base     string
	input    json.RawMessage
	webhook  string
	filter   []string // nil: every event
	deadline time.Time
	ctx      context.Context
	stop     context.CancelFunc
	advance  chan struct{}
	hook     *fakekit.Sender // nil without a webhook

	// Guarded by Fake.mu.
	status      string
	output      any
	errMsg      string
	logs        []string
	createdAt   time.Time
	startedAt   time.Time
	completedAt time.Time
}

func stamp(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// terminal reports whether status is one of §3.1's terminal four.
func terminal(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCanceled || status == StatusAborted
}

// viewLocked is the prediction object of §3.1, with input, output and logs
// removed once the retention is over (§3.1 Retention).
func (f *Fake) viewLocked(p *prediction) map[string]any {
	get := p.base + "/v1/predictions/" + p.create.ID
	removed := !p.completedAt.IsZero() && time.Since(p.completedAt) >= f.cfg.Retention
	v := map[string]any{
		"id": p.create.ID, "model": p.create.Model, "version": p.create.Version, "status": p.status,
		"input": p.input, "output": p.output, "error": nil, "logs": strings.Join(p.logs, ""),
		"source": "api", "data_removed": removed, "metrics": map[string]any{},
		"created_at": stamp(p.createdAt), "started_at": stamp(p.startedAt), "completed_at": stamp(p.completedAt),
		"urls": map[string]string{"get": get, "cancel": get + "/cancel"},
	}
	if p.errMsg != "" {
		v["error"] = p.errMsg
	}
	if !p.deadline.IsZero() {
		v["deadline"] = stamp(p.deadline)
	}
	if p.webhook != "" {
		v["webhook"] = p.webhook
		if p.filter != nil {
			v["webhook_events_filter"] = p.filter
		}
	}
	if terminal(p.status) {
		m := map[string]any{"total_time": p.completedAt.Sub(p.createdAt).Seconds()}
		if !p.startedAt.IsZero() {
			m["predict_time"] = p.completedAt.Sub(p.startedAt).Seconds() // excludes queue time
		}
		v["metrics"] = m
	}
	if removed {
		v["input"], v["output"], v["logs"] = map[string]any{}, nil, ""
	}
	return v
}

// createBody is the create request of §3.1.
type createBody struct {
	Version             string          `json:"version"`
	Input               json.RawMessage `json:"input"`
	Webhook             string          `json:"webhook"`
	WebhookEventsFilter []string        `json:"webhook_events_filter"`
	Stream              bool            `json:"stream"`
}

// create starts a prediction (§3.1 create; Prefer and Cancel-After
// headers).
func (f *Fake) create(w http.ResponseWriter, r *http.Request, model, deployment string) {
	now := time.Now()
	raw, err := io.ReadAll(r.Body)
	rec := Create{Path: r.URL.Path, Model: model, Body: raw, Header: r.Header.Clone(), At: now}
	refuse := func(code int, title, detail string) {
		rec.Code = code
		f.creates.Add(rec)
		problem(w, code, title, detail)
	}
	var body createBody
	if err != nil || json.Unmarshal(raw, &body) != nil {
		refuse(http.StatusBadRequest, "Invalid JSON", "The request body is not valid JSON.")
		return
	}
	rec.Version = body.Version
	if deployment != "" {
		rec.Model, rec.Version = deployment, "deployment"
	}
	switch {
	case model != "":
		rec.Version = "hidden" // §3.1: official models may hide the version
	case deployment == "" && body.Version == "":
		refuse(http.StatusUnprocessableEntity, "Invalid version or not permitted", "version is required")
		return
	}
	if model == "" && deployment == "" {
		if owner, ver, ok := strings.Cut(body.Version, ":"); ok {
			rec.Model, rec.Version = owner, ver
		}
	}
	if len(body.Input) == 0 || body.Input[0] != '{' {
		refuse(http.StatusUnprocessableEntity, "Input validation failed", "input is required and must be an object")
		return
	}
	for _, e := range body.WebhookEventsFilter {
		if !slices.Contains([]string{EventStart, EventOutput, EventLogs, EventCompleted}, e) {
			refuse(http.StatusUnprocessableEntity, "Invalid webhook_events_filter", fmt.Sprintf("unknown event %q", e))
			return
		}
	}
	var cancelAfter time.Duration
	if v := r.Header.Get("Cancel-After"); v != "" {
		if cancelAfter, err = time.ParseDuration(v); err != nil || cancelAfter <= 0 {
			refuse(http.StatusBadRequest, "Invalid Cancel-After", fmt.Sprintf("Cancel-After %q is not a duration such as 1m or 30s", v))
			return
		}
	}
	wait, err := preferWait(r.Header.Get("Prefer"), f.cfg.MaxWait)
	if err != nil {
		refuse(http.StatusBadRequest, "Invalid Prefer header", err.Error())
		return
	}

	f.mu.Lock()
	if limited, after := f.throttledLocked(now); limited {
		f.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(after))
		refuse(http.StatusTooManyRequests, "Request was throttled",
			fmt.Sprintf("Request was throttled. Your rate limit resets in ~%ds.", after))
		return
	}
	f.seq++
	rec.ID = fmt.Sprintf("rf%010d", f.seq)
	rec.Code = http.StatusCreated // §3.1 ⚠ 201
	ctx, stop := context.WithCancel(f.ctx)
	p := &prediction{
		create: rec, base: fakekit.BaseURL(r), input: body.Input, webhook: body.Webhook,
		filter: body.WebhookEventsFilter, ctx: ctx, stop: stop,
		advance: fakekit.NewAdvance(), status: StatusStarting, createdAt: now,
	}
	if p.webhook != "" {
		p.hook = f.newSender(p)
	}
	if cancelAfter > 0 {
		p.deadline = now.Add(cancelAfter)
	}
	f.preds[rec.ID] = p
	f.order = append(f.order, p)
	f.creates.Add(rec)
	// §3.1 Webhooks: "start" is sent when the prediction is created ⚠
	// (the fake's reading of "immediately on prediction start").
	f.emitLocked(p, EventStart)
	f.wg.Add(1)
	if p.hook != nil {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			p.hook.Run(f.ctx)
		}()
	}
	f.mu.Unlock()
	f.changes.Notify()
	go f.run(p)

	if wait > 0 {
		// §3.1 Prefer: wait — hold until done or the wait is over, then
		// answer whatever state it is in.
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		_ = f.changes.Until(ctx, func() bool { return terminal(f.Status(rec.ID)) })
		cancel()
	}
	f.mu.Lock()
	view := f.viewLocked(p)
	f.mu.Unlock()
	w.Header().Set("Location", p.base+"/v1/predictions/"+rec.ID)
	fakekit.WriteJSON(w, http.StatusCreated, view)
}

// preferWait reads "Prefer: wait" or "wait=N" (§3.1: default 60 s, at
// least 1, at most 60; capped here by max).
func preferWait(h string, limit time.Duration) (time.Duration, error) {
	for part := range strings.SplitSeq(h, ",") {
		part = strings.TrimSpace(part)
		if part == "wait" {
			return min(60*time.Second, limit), nil
		}
		if v, ok := strings.CutPrefix(part, "wait="); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 60 {
				return 0, fmt.Errorf("Prefer wait=%q must be between 1 and 60 seconds", v)
			}
			return min(time.Duration(n)*time.Second, limit), nil
		}
	}
	return 0, nil
}

// get answers the prediction object (§3.1 get).
func (f *Fake) get(w http.ResponseWriter, _ *http.Request, id string) {
	f.mu.Lock()
	f.polls[id]++
	p, ok := f.preds[id]
	if !ok {
		f.mu.Unlock()
		problem(w, http.StatusNotFound, "Not found", "The requested resource could not be found.")
		return
	}
	view := f.viewLocked(p)
	f.mu.Unlock()
	fakekit.WriteJSON(w, http.StatusOK, view)
}

// list answers {next, previous, results}, newest first (§3.1 list).
func (f *Fake) list(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	results := make([]any, 0, len(f.order))
	for _, p := range slices.Backward(f.order) {
		results = append(results, f.viewLocked(p))
	}
	f.mu.Unlock()
	fakekit.WriteJSON(w, http.StatusOK, map[string]any{"next": nil, "previous": nil, "results": results})
}

// cancel ends a prediction that is not terminal as canceled and answers
// the object (§3.1 cancel); a terminal one is answered unchanged.
func (f *Fake) cancel(w http.ResponseWriter, _ *http.Request, id string) {
	f.mu.Lock()
	f.cancels.Add(id)
	p, ok := f.preds[id]
	if !ok {
		f.mu.Unlock()
		problem(w, http.StatusNotFound, "Not found", "The requested resource could not be found.")
		return
	}
	if !terminal(p.status) {
		f.finishLocked(p, StatusCanceled, "")
	}
	view := f.viewLocked(p)
	f.mu.Unlock()
	f.changes.Notify()
	fakekit.WriteJSON(w, http.StatusOK, view)
}

// finishLocked makes p terminal and stops its progression.
func (f *Fake) finishLocked(p *prediction, status, errMsg string) {
	p.status, p.errMsg, p.completedAt = status, errMsg, time.Now()
	p.stop()
	f.emitLocked(p, EventCompleted)
}

// run moves p through starting → processing → terminal (§3.1 statuses,
// §3.3), ending at its Cancel-After deadline: aborted when it had not
// started, canceled when it had (§3.1 Cancel-After).
func (f *Fake) run(p *prediction) {
	defer f.wg.Done()
	var deadline <-chan time.Time
	if !p.deadline.IsZero() {
		t := time.NewTimer(time.Until(p.deadline))
		defer t.Stop()
		deadline = t.C
	}
	if !f.phase(p, f.cfg.StartTime, deadline, StatusAborted) {
		return
	}
	f.mu.Lock()
	if terminal(p.status) {
		f.mu.Unlock()
		return
	}
	p.status, p.startedAt = StatusProcessing, time.Now()
	f.mu.Unlock()
	f.changes.Notify()

	step := f.cfg.RunTime
	if step > 0 {
		step /= time.Duration(f.cfg.LogLines + 1)
	}
	for i := range f.cfg.LogLines {
		if !f.phase(p, step, deadline, StatusCanceled) {
			return
		}
		f.mu.Lock()
		p.logs = append(p.logs, fmt.Sprintf("step %d/%d\n", i+1, f.cfg.LogLines))
		f.emitLocked(p, EventLogs)
		f.mu.Unlock()
		f.changes.Notify()
	}
	if !f.phase(p, step, deadline, StatusCanceled) {
		return
	}
	out := Outcome{}
	if f.cfg.Outcome != nil {
		out = f.cfg.Outcome(p.create)
	}
	if out.Error == "" && out.Output == nil {
		out.Output = f.render(p)
	}
	f.mu.Lock()
	if !terminal(p.status) {
		if out.Error != "" {
			f.finishLocked(p, StatusFailed, out.Error)
		} else {
			p.output = out.Output
			f.emitLocked(p, EventOutput) // §3.1: outputs may appear before the terminal status
			f.finishLocked(p, StatusSucceeded, "")
		}
	}
	f.mu.Unlock()
	f.changes.Notify()
}

// phase waits one step; at the deadline it ends p with onDeadline. It
// reports whether the progression goes on.
func (f *Fake) phase(p *prediction, d time.Duration, deadline <-chan time.Time, onDeadline string) bool {
	switch fakekit.Phase(d, p.advance, p.ctx.Done(), deadline) {
	case fakekit.Interrupted:
		return false
	case fakekit.Deadline:
		f.mu.Lock()
		if !terminal(p.status) {
			f.finishLocked(p, onDeadline, "")
		}
		f.mu.Unlock()
		f.changes.Notify()
		return false
	}
	return true
}

// render makes the default output (fakekit.Outputs) as URLs served by
// the fake until the retention ends.
func (f *Fake) render(p *prediction) any {
	var urls []string
	for _, data := range fakekit.Outputs(p.create.ID, p.input) {
		urls = append(urls, p.base+f.files.Put(data, "image/png", ".png", f.cfg.Retention))
	}
	return urls
}
