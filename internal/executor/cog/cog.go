// Package cog is the executor of self-hosted Cog containers
// (reference/executors.md §3.2). A Cog container has no endpoint to poll:
// a job is submitted as PUT /predictions/{id} with Prefer: respond-async
// and a webhook to our own callback route, whose URL carries an
// unguessable per-job token; the run waits for the webhooks (Callbacks),
// which reach it through the job's inbox in the task store whichever
// process receives them.
// The prediction id is ours, so the handle is saved before the PUT. When
// no webhook comes for CallbackTimeout the run reconciles: while the
// container still runs the prediction, the same PUT re-attaches to it
// (idempotent); otherwise the result is gone and the job is lost.
package cog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
)

// Kind is the executor type name of Cog in the config file.
const Kind = "cog"

// The prediction statuses (§3.2).
const (
	statusStarting   = "starting"
	statusProcessing = "processing"
	statusSucceeded  = "succeeded"
	statusFailed     = "failed"
	statusCanceled   = "canceled"
)

// The health-check states (§3.2 GET /health-check).
const (
	healthReady    = "READY"
	healthBusy     = "BUSY"
	healthStarting = "STARTING"
)

func terminal(status string) bool {
	return status == statusSucceeded || status == statusFailed || status == statusCanceled
}

// Settings are Cog's settings in the config file
// (`executors: {NAME: {type: cog, …}}`).
type Settings struct {
	// URL is the container's base URL (http://gpu-3:5000).
	URL string `json:"url"`
	// CallbackURL is the base URL at which the container reaches this
	// server's API (default: the server's public_url); the webhook goes
	// to CallbackURL + /api/v1/callbacks/cog/{token}.
	CallbackURL string `json:"callback_url"`
	// WebhookAuthToken is the container's WEBHOOK_AUTH_TOKEN, when it has
	// one: webhooks without it as a bearer token are refused. Write
	// "${COG_WEBHOOK_TOKEN}".
	WebhookAuthToken string `json:"webhook_auth_token"`
	// CallbackTimeout is how long a run waits without a webhook before it
	// asks the container whether the prediction still runs (default 5m).
	CallbackTimeout string `json:"callback_timeout"`
	hosted.Common
}

// Executor runs jobs on one Cog container.
type Executor struct {
	name     string
	url      string
	callback string
	auth     string
	timeout  time.Duration
	common   hosted.Common
	api      hosted.Client
	http     *http.Client
	inbox    *Callbacks
}

var (
	_ executor.Executor = (*Executor)(nil)
	_ executor.Pinger   = (*Executor)(nil)
)

// New returns the Cog executor called name. hc makes its calls (nil:
// http.DefaultClient); callbacks receives the webhooks (the API serves
// it); publicURL is the server's public base URL, the default
// CallbackURL.
func New(name string, s Settings, hc *http.Client, callbacks *Callbacks, publicURL string) (*Executor, error) {
	if s.URL == "" {
		return nil, errors.New("url (the container's base URL) is required")
	}
	if callbacks == nil {
		return nil, errors.New("this process receives no callbacks (a cog executor needs the API's callback route)")
	}
	cb := strings.TrimRight(s.CallbackURL, "/")
	if cb == "" {
		cb = strings.TrimRight(publicURL, "/")
	}
	if cb == "" {
		return nil, errors.New("callback_url is required when the server has no public_url: the container must reach our callback route")
	}
	timeout, err := hosted.ParseDuration("callback_timeout", s.CallbackTimeout, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	return &Executor{
		name: name, url: strings.TrimRight(s.URL, "/"), callback: cb, auth: s.WebhookAuthToken, timeout: timeout,
		common: s.Common, api: hosted.Client{HTTP: hc}, http: hc, inbox: callbacks,
	}, nil
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return e.name }

// state is the handle's state: the job's callback token.
type state struct {
	Token string `json:"token"`
}

// prediction is the part of a prediction object (§3.2) the executor reads.
type prediction struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Output any    `json:"output"`
	Error  any    `json:"error"`
	Logs   string `json:"logs"`
	// Metrics.PredictTime is the model's time in seconds, on a finished
	// prediction.
	Metrics struct {
		PredictTime float64 `json:"predict_time"`
	} `json:"metrics"`
}

// Start implements executor.Executor: it chooses the prediction id and
// callback token, saves the handle, then PUTs the prediction (§3.2).
func (e *Executor) Start(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	token, err := newToken()
	if err != nil {
		return executor.Handle{}, fmt.Errorf("making a callback token: %w", err)
	}
	idb := make([]byte, 16)
	if _, err := rand.Read(idb); err != nil {
		return executor.Handle{}, fmt.Errorf("making a prediction id: %w", err)
	}
	raw, err := json.Marshal(state{Token: token})
	if err != nil {
		return executor.Handle{}, fmt.Errorf("encoding cog handle: %w", err)
	}
	h := executor.Handle{Executor: e.name, Server: e.url, ExternalID: hex.EncodeToString(idb), Version: executor.HandleVersion, State: raw}
	// The id is ours: save it before the container hears of it, so a
	// crash in between leaves a handle, never an orphan (§5.1).
	if job.SaveHandle != nil {
		if err := job.SaveHandle(ctx, h); err != nil {
			return executor.Handle{}, fmt.Errorf("saving handle of prediction %s: %w", h.ExternalID, err)
		}
	}
	box := e.inbox.box(token, e.auth)
	if err := box.open(ctx); err != nil {
		return executor.Handle{}, fmt.Errorf("opening the callback inbox of prediction %s: %w", h.ExternalID, err)
	}
	code, err := e.put(ctx, job, h, token)
	if err != nil {
		box.close(ctx)
		return executor.Handle{}, err
	}
	if code != http.StatusAccepted && code != http.StatusOK {
		box.close(ctx)
		return executor.Handle{}, executor.Errorf(executor.ProviderError, "cog answered %d to PUT /predictions/%s", code, h.ExternalID)
	}
	return h, nil
}

// put sends PUT /predictions/{id} asynchronously with the job's webhook.
// A 202 (or 200) is returned as its code; 409 (every slot busy) is the
// container unavailable, other refusals as their status says.
func (e *Executor) put(ctx context.Context, job *executor.Job, h executor.Handle, token string) (int, error) {
	in, err := e.common.BuildInput(ctx, job, nil)
	if err != nil {
		return 0, err
	}
	body := map[string]any{
		"id": h.ExternalID, "input": in,
		"webhook":               e.callback + CallbackPath + token,
		"webhook_events_filter": []string{"start", "output", "logs", "completed"},
	}
	resp, err := e.api.Do(ctx, http.MethodPut, e.url+"/predictions/"+h.ExternalID, body, http.Header{"Prefer": {"respond-async"}})
	if err != nil {
		return 0, err
	}
	switch resp.Code {
	case http.StatusAccepted, http.StatusOK:
		return resp.Code, nil
	case http.StatusConflict:
		// §3.2: "At capacity - all prediction slots busy"; another
		// container (a fallback) may take it.
		return resp.Code, executor.Errorf(executor.ProviderUnavailable, "cog container %s is busy: %s", e.url, hosted.Detail(resp.Body))
	}
	return resp.Code, hosted.StatusError("cog PUT /predictions/"+h.ExternalID, resp)
}

// stateOf reads a handle's state; a handle of another layout is lost.
func stateOf(h executor.Handle) (state, error) {
	var s state
	if h.Version != executor.HandleVersion || json.Unmarshal(h.State, &s) != nil || s.Token == "" {
		return s, executor.Errorf(executor.Lost, "cog handle of prediction %s cannot be read (version %d)", h.ExternalID, h.Version)
	}
	return s, nil
}

// Wait implements executor.Executor: it follows the prediction by its
// webhooks, read from its inbox when this process receives one and, with
// shared callbacks, every pollEvery (another process may have). When none
// comes for the callback timeout it reconciles (reconcile): the container
// still runs it, and the wait goes on, or the job is lost.
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	s, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	box := e.inbox.box(s.Token, e.auth)
	defer box.stop()
	// An inbox that cannot be opened now is opened by next once the
	// store answers again.
	_ = box.open(ctx)
	m := hosted.Meter{R: r}
	if err := m.Report(ctx, 0, "submitted to cog"); err != nil {
		return nil, err
	}
	poll, stopPoll := box.poll()
	defer stopPoll()
	timer := time.NewTimer(e.timeout)
	defer timer.Stop()
	for {
		changed := box.changed()
		p, err := box.next(ctx)
		if err != nil {
			return nil, e.closed(h)
		}
		if p != nil {
			if done, out, err := e.step(ctx, job, h.ExternalID, p, &m); done {
				box.close(ctx)
				return out, err
			}
			timer.Reset(e.timeout)
		}
		select {
		case <-changed:
		case <-poll:
		case <-timer.C:
			if err := e.reconcile(ctx, job, h, box); err != nil {
				return nil, err
			}
			timer.Reset(e.timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// closed is the error of a run whose inbox was closed by an earlier run
// of the same attempt that stopped before its task was stored
// (errClosed): the result, if any, is gone, as after a missed webhook.
func (e *Executor) closed(h executor.Handle) error {
	return executor.Errorf(executor.Lost, "the callbacks of cog prediction %s were closed by an earlier run that stopped before storing its result; the result is gone", h.ExternalID)
}

// step handles one webhook's prediction state: progress while it runs,
// its end once terminal (done).
func (e *Executor) step(ctx context.Context, job *executor.Job, id string, p *prediction, m *hosted.Meter) (bool, *executor.Output, error) {
	switch p.Status {
	case statusStarting:
		return false, nil, m.Report(ctx, 5, "starting on cog")
	case statusProcessing:
		return false, nil, m.Running(ctx, p.Logs, "running on cog")
	case statusSucceeded:
		out, err := hosted.Collect(ctx, m, e.http, job, p.Output, map[string]any{"prediction_id": id})
		if out != nil {
			out.Usage.ProviderSeconds = p.Metrics.PredictTime
		}
		return true, out, err
	case statusFailed:
		return true, nil, hosted.Failure("cog prediction "+id, p.Error)
	case statusCanceled:
		return true, nil, executor.Errorf(executor.Cancelled, "cog prediction %s was cancelled", id)
	}
	return true, nil, executor.Errorf(executor.ProviderError, "cog sent an unknown status %q for prediction %s", p.Status, id)
}

// reconcile asks the container about a prediction whose webhooks stopped
// (§3.2: there is no GET for a prediction). A container that is idle
// (READY) or restarting no longer runs it: its result, if any, went to a
// webhook we missed, so the job is lost. A busy one may run it: the same
// PUT answers 202 while the prediction is in flight (idempotent), 409
// when the slot is another's (lost).
func (e *Executor) reconcile(ctx context.Context, job *executor.Job, h executor.Handle, box *mailbox) error {
	if box.ended(ctx) {
		return nil // the end already arrived: the wait reads it
	}
	health, err := e.health(ctx)
	if err != nil {
		return err
	}
	if box.ended(ctx) {
		return nil // the end arrived meanwhile
	}
	if health != healthBusy {
		return executor.Errorf(executor.Lost, "cog container %s is %s and no longer runs prediction %s; its result never reached us", e.url, health, h.ExternalID)
	}
	s, err := stateOf(h)
	if err != nil {
		return err
	}
	code, err := e.put(ctx, job, h, s.Token)
	switch {
	case code == http.StatusConflict:
		return executor.Errorf(executor.Lost, "cog container %s runs another prediction, not %s", e.url, h.ExternalID)
	case err != nil:
		return err
	}
	return nil
}

// health reads GET /health-check's status (§3.2).
func (e *Executor) health(ctx context.Context) (string, error) {
	resp, err := e.api.Do(ctx, http.MethodGet, e.url+"/health-check", nil, nil)
	if err != nil {
		return "", err
	}
	if resp.Code != http.StatusOK {
		return "", hosted.StatusError("cog health check", resp)
	}
	var v struct {
		Status string `json:"status"`
	}
	if err := resp.Decode(&v); err != nil {
		return "", err
	}
	return v.Status, nil
}

// Ping implements executor.Pinger: the container is up when its health
// check says READY or BUSY.
func (e *Executor) Ping(ctx context.Context) error {
	st, err := e.health(ctx)
	if err != nil {
		return err
	}
	if st != healthReady && st != healthBusy {
		return executor.Errorf(executor.ProviderUnavailable, "cog container %s is %s", e.url, st)
	}
	return nil
}

// Cancel implements executor.Executor: POST /predictions/{id}/cancel
// (§3.2); an unknown prediction (ended, or never started) is not an error.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	return e.api.Cancel(ctx, http.MethodPost, e.url+"/predictions/"+h.ExternalID+"/cancel", "cancelling cog prediction "+h.ExternalID, http.StatusNotFound)
}

// Recover implements executor.Executor: a prediction whose end already
// arrived (in its inbox, which outlives the process: shared callbacks),
// or that the container still runs (re-attached by the same PUT), is
// waited on again; otherwise it is lost.
func (e *Executor) Recover(ctx context.Context, job *executor.Job, h executor.Handle) (executor.Handle, error) {
	s, err := stateOf(h)
	if err != nil {
		return h, err
	}
	if h.Server != "" && strings.TrimRight(h.Server, "/") != e.url {
		return h, executor.Errorf(executor.Lost, "prediction %s ran on %s, which this executor no longer uses", h.ExternalID, h.Server)
	}
	box := e.inbox.box(s.Token, e.auth)
	if err := box.open(ctx); err != nil {
		return h, fmt.Errorf("opening the callback inbox of prediction %s: %w", h.ExternalID, err)
	}
	if err := e.reconcile(ctx, job, h, box); err != nil {
		return h, err
	}
	return h, nil
}
