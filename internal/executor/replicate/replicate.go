// Package replicate is the executor of Replicate's predictions API
// (reference/executors.md §3.1): a prediction is created by model
// (POST /v1/models/{owner}/{name}/predictions), by version
// (POST /v1/predictions) or on a deployment, polled with backoff until it
// ends, and its output files downloaded into the artifact store at once
// (Replicate removes them after an hour). Inputs Replicate cannot fetch are
// inlined as data URIs or, larger, uploaded to its files API (upload.go).
// The run's execution deadline is
// sent as Cancel-After; a 429 is retried no sooner than its Retry-After.
package replicate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/task"
)

// Kind is the executor type name of Replicate in the config file.
const Kind = "replicate"

// DefaultBaseURL is Replicate's API.
const DefaultBaseURL = "https://api.replicate.com"

// The prediction statuses (§3.1).
const (
	statusStarting   = "starting"
	statusProcessing = "processing"
	statusSucceeded  = "succeeded"
	statusFailed     = "failed"
	statusCanceled   = "canceled"
	statusAborted    = "aborted"
)

// Settings are Replicate's settings in the config file
// (`executors: {NAME: {type: replicate, …}}`): the token, and the shared
// hosted settings — base_url (default https://api.replicate.com), model
// and models per task type, input, inline_input_max_bytes, upload_inputs,
// upload_max_bytes, poll_interval and poll_max. A model is "owner/name" (an official model, its latest
// version), "owner/name:VERSION" or a bare 64-hex VERSION (that version),
// or "deployments/owner/name".
type Settings struct {
	// Token is the API token; write "${REPLICATE_API_TOKEN}".
	Token string `json:"token"`
	hosted.Settings
}

// Executor runs jobs as Replicate predictions.
type Executor struct {
	r  *hosted.Remote
	up *uploader
}

var _ executor.Executor = (*Executor)(nil)

// New returns the Replicate executor called name; hc makes its calls
// (nil: http.DefaultClient).
func New(name string, s Settings, hc *http.Client) (*Executor, error) {
	if s.Token == "" {
		return nil, errors.New("token is required (write token: ${REPLICATE_API_TOKEN})")
	}
	for _, m := range append([]string{s.Model}, slices.Collect(maps.Values(s.Models.Models))...) {
		if _, _, err := route(m); m != "" && err != nil {
			return nil, err
		}
	}
	r, err := hosted.NewRemote(name, s.Settings, DefaultBaseURL, "Bearer "+s.Token, hc)
	if err != nil {
		return nil, err
	}
	return &Executor{r: r, up: &uploader{api: &r.API, base: r.Base}}, nil
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return e.r.Name }

var versionID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// route returns the create path of a model setting and the version to put
// in the body (§3.1 create).
func route(model string) (path, version string, err error) {
	switch {
	case versionID.MatchString(model):
		return "/v1/predictions", model, nil
	case strings.HasPrefix(model, "deployments/") && strings.Count(model, "/") == 2:
		return "/v1/" + model + "/predictions", "", nil
	}
	name, ver, hasVer := strings.Cut(model, ":")
	if strings.Count(name, "/") != 1 || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") {
		return "", "", fmt.Errorf("model %q: want owner/name, owner/name:VERSION, a version id or deployments/owner/name", model)
	}
	if hasVer {
		return "/v1/predictions", ver, nil
	}
	return "/v1/models/" + name + "/predictions", "", nil
}

// state is the handle's state: the prediction's URLs and the Cancel-After
// deadline sent.
type state struct {
	Get      string    `json:"get"`
	Cancel   string    `json:"cancel"`
	Deadline time.Time `json:"deadline,omitzero"`
}

// prediction is the part of a prediction object (§3.1) the executor reads.
type prediction struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Output      any    `json:"output"`
	Error       any    `json:"error"`
	Logs        string `json:"logs"`
	DataRemoved bool   `json:"data_removed"`
	// Metrics appear on terminal predictions (§3.1): predict_time
	// excludes queueing; language models add token counts.
	Metrics struct {
		PredictTime      float64 `json:"predict_time"`
		InputTokenCount  int64   `json:"input_token_count"`
		OutputTokenCount int64   `json:"output_token_count"`
	} `json:"metrics"`
	URLs struct {
		Get    string `json:"get"`
		Cancel string `json:"cancel"`
	} `json:"urls"`
}

// Start implements executor.Executor: it creates the prediction (§3.1)
// with Cancel-After set to the run's deadline, and returns the handle
// naming its id.
func (e *Executor) Start(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	model := e.r.Models.For(job.Type)
	if model == "" {
		return executor.Handle{}, executor.Errorf(executor.InvalidInput, "no Replicate model is configured for %s tasks", job.Type)
	}
	path, version, err := route(model)
	if err != nil {
		return executor.Handle{}, executor.Classify(executor.InvalidInput, err)
	}
	in, err := e.r.Common.BuildInputUploading(ctx, job, nil, e.up)
	if err != nil {
		return executor.Handle{}, err
	}
	body := map[string]any{"input": in}
	if version != "" {
		body["version"] = version
	}
	header := http.Header{}
	var st state
	if dl, ok := ctx.Deadline(); ok {
		// §3.1 Cancel-After: not started by then → aborted, running →
		// canceled; either way not billed past our own timeout.
		secs := math.Ceil(time.Until(dl).Seconds())
		if secs < 1 {
			return executor.Handle{}, executor.Errorf(executor.Timeout, "the run's deadline passed before the prediction was created")
		}
		header.Set("Cancel-After", fmt.Sprintf("%ds", int(secs)))
		st.Deadline = dl.UTC()
	}
	resp, err := e.r.API.Do(ctx, http.MethodPost, e.r.Base+path, body, header)
	if err != nil {
		return executor.Handle{}, err
	}
	if resp.Code < 200 || resp.Code > 299 { // §3.1: 201 ⚠, any 2xx
		return executor.Handle{}, hosted.StatusError("creating a Replicate prediction of "+model, resp)
	}
	var p prediction
	if err := resp.Decode(&p); err != nil {
		return executor.Handle{}, err
	}
	if p.ID == "" {
		return executor.Handle{}, executor.Errorf(executor.ProviderError, "Replicate's create answer has no prediction id")
	}
	st.Get, st.Cancel = p.URLs.Get, p.URLs.Cancel
	if st.Get == "" {
		st.Get = e.r.Base + "/v1/predictions/" + p.ID
	}
	if st.Cancel == "" {
		st.Cancel = st.Get + "/cancel"
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return executor.Handle{}, fmt.Errorf("encoding Replicate handle: %w", err)
	}
	return executor.Handle{Executor: e.r.Name, ExternalID: p.ID, Version: executor.HandleVersion, State: raw}, nil
}

// stateOf reads a handle's state; a handle of another layout is lost.
func stateOf(h executor.Handle) (state, error) {
	var s state
	if h.Version != executor.HandleVersion || json.Unmarshal(h.State, &s) != nil || s.Get == "" {
		return s, executor.Errorf(executor.Lost, "Replicate handle of prediction %s cannot be read (version %d)", h.ExternalID, h.Version)
	}
	return s, nil
}

// get reads the prediction once.
func (e *Executor) get(ctx context.Context, id string, s state) (prediction, error) {
	var p prediction
	resp, err := e.r.API.Do(ctx, http.MethodGet, s.Get, nil, nil)
	if err != nil {
		return p, err
	}
	switch resp.Code {
	case http.StatusOK:
	case http.StatusNotFound:
		return p, executor.Errorf(executor.Lost, "Replicate no longer knows prediction %s", id)
	default:
		return p, hosted.StatusError("polling Replicate prediction "+id, resp)
	}
	err = resp.Decode(&p)
	return p, err
}

// Wait implements executor.Executor: it polls the prediction with backoff
// (a 429 waits its Retry-After), reporting the progress its logs show,
// until it ends; a success's output files are downloaded.
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	s, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	m := hosted.Meter{R: r}
	var out *executor.Output
	err = hosted.Follow(ctx, e.r.Backoff, func(ctx context.Context) (prediction, error) {
		return e.get(ctx, h.ExternalID, s)
	}, func(p prediction) (string, bool, error) {
		var done bool
		var err error
		done, out, err = e.step(ctx, job, h.ExternalID, s, p, &m)
		return fmt.Sprint(p.Status, len(p.Logs)), done, err
	})
	return out, err
}

// step handles one poll's prediction: progress while it runs, its end
// once terminal (done).
func (e *Executor) step(ctx context.Context, job *executor.Job, id string, s state, p prediction, m *hosted.Meter) (done bool, out *executor.Output, err error) {
	switch p.Status {
	case statusStarting:
		return false, nil, m.Report(ctx, 0, "starting at Replicate")
	case statusProcessing:
		return false, nil, m.Running(ctx, p.Logs, "running at Replicate")
	case statusSucceeded:
		out, err := e.succeeded(ctx, job, id, p, m)
		return true, out, err
	case statusFailed:
		return true, nil, hosted.Failure("Replicate prediction "+id, p.Error)
	case statusCanceled:
		if !e.r.Cancelled(id) && !s.Deadline.IsZero() && !time.Now().Before(s.Deadline.Add(-time.Second)) {
			return true, nil, executor.Errorf(executor.Timeout, "Replicate cancelled prediction %s at its Cancel-After deadline", id)
		}
		return true, nil, executor.Errorf(executor.Cancelled, "Replicate prediction %s was cancelled", id)
	case statusAborted:
		return true, nil, executor.Errorf(executor.Timeout, "Replicate prediction %s did not start before its Cancel-After deadline (aborted)", id)
	}
	return true, nil, executor.Errorf(executor.ProviderError, "Replicate answered an unknown status %q for prediction %s", p.Status, id)
}

// succeeded downloads a successful prediction's output files.
func (e *Executor) succeeded(ctx context.Context, job *executor.Job, id string, p prediction, m *hosted.Meter) (*executor.Output, error) {
	if p.DataRemoved {
		return nil, executor.Errorf(executor.Lost, "Replicate removed the output of prediction %s (kept an hour)", id)
	}
	out, err := hosted.Collect(ctx, m, e.r.HTTP, job, p.Output, map[string]any{"prediction_id": id})
	if err != nil {
		return nil, err
	}
	out.Usage = task.Usage{ProviderSeconds: p.Metrics.PredictTime,
		InputTokens: p.Metrics.InputTokenCount, OutputTokens: p.Metrics.OutputTokenCount}
	return out, nil
}

// Cancel implements executor.Executor: POST the cancel URL (§3.1). A
// prediction already ended or unknown is not an error.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	s, err := stateOf(h)
	if err != nil {
		return nil
	}
	e.r.MarkCancelled(h.ExternalID)
	return e.r.API.Cancel(ctx, http.MethodPost, s.Cancel, "cancelling Replicate prediction "+h.ExternalID, http.StatusNotFound)
}

// Recover implements executor.Executor: a prediction Replicate still
// answers for is waited on again (a finished one too: Wait collects it);
// one it does not know is lost.
func (e *Executor) Recover(ctx context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	s, err := stateOf(h)
	if err != nil {
		return h, err
	}
	if _, err := e.get(ctx, h.ExternalID, s); err != nil {
		return h, err
	}
	return h, nil
}
