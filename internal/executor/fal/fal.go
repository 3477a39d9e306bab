// Package fal is the executor of fal.ai's queue API
// (reference/executors.md §2): a job is submitted to
// POST {base_url}/{model}, followed by polling the status URL the submit
// returned with backoff, and its result fetched from the response URL;
// its output files are downloaded into the artifact store at once, since
// fal's media URLs expire. Inputs fal cannot fetch are inlined as data URIs
// or, larger, uploaded to fal's CDN storage (upload.go). A task's start_timeout_seconds is sent as
// X-Fal-Request-Timeout; a COMPLETED request whose result is an error
// fails with the error's category.
package fal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
)

// Kind is the executor type name of fal in the config file.
const Kind = "fal"

// DefaultBaseURL is fal's queue API.
const DefaultBaseURL = "https://queue.fal.run"

// The request statuses (§2.2).
const (
	statusInQueue    = "IN_QUEUE"
	statusInProgress = "IN_PROGRESS"
	statusCompleted  = "COMPLETED"
)

// Settings are fal's settings in the config file
// (`executors: {NAME: {type: fal, …}}`): the key, and the shared hosted
// settings — base_url (default https://queue.fal.run), model (e.g.
// fal-ai/flux/dev, submitted with its subpath) and models per task type
// (e.g. {training: fal-ai/flux-lora-fast-training}), input,
// inline_input_max_bytes, upload_inputs, upload_max_bytes, poll_interval
// and poll_max.
type Settings struct {
	// Key is the FAL_KEY ("key_id:key_secret"); write "${FAL_KEY}".
	Key string `json:"key"`
	// StorageURL is fal's REST API, which hands out storage tokens
	// (default https://rest.fal.ai); CDNURL is the CDN inputs are
	// uploaded to (default https://v3.fal.media). Tests point both at the
	// fake.
	StorageURL string `json:"storage_url"`
	CDNURL     string `json:"cdn_url"`
	hosted.Settings
}

// Executor runs jobs on fal's queue.
type Executor struct {
	r  *hosted.Remote
	up *uploader
}

var _ executor.Executor = (*Executor)(nil)

// New returns the fal executor called name; hc makes its calls (nil:
// http.DefaultClient).
func New(name string, s Settings, hc *http.Client) (*Executor, error) {
	if s.Key == "" {
		return nil, errors.New("key is required (write key: ${FAL_KEY})")
	}
	r, err := hosted.NewRemote(name, s.Settings, DefaultBaseURL, "Key "+s.Key, hc)
	if err != nil {
		return nil, err
	}
	return &Executor{r: r, up: newUploader(s, hc)}, nil
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return e.r.Name }

// state is the handle's state: the URLs submit returned, which status,
// result and cancel must use ("Do not build these URLs yourself", §2.1).
type state struct {
	StatusURL   string `json:"status_url"`
	ResponseURL string `json:"response_url"`
	CancelURL   string `json:"cancel_url"`
}

// Start implements executor.Executor: it submits the job (§2.1) and
// returns the handle naming fal's request id and its URLs.
func (e *Executor) Start(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	model := e.r.Models.For(job.Type)
	if model == "" {
		return executor.Handle{}, executor.Errorf(executor.InvalidInput, "no fal model is configured for %s tasks", job.Type)
	}
	in, err := e.r.Common.BuildInputUploading(ctx, job, shape, e.up)
	if err != nil {
		return executor.Handle{}, err
	}
	header := http.Header{}
	if !job.StartBy.IsZero() {
		// §2.3: a time-to-start deadline in seconds; the SDK requires more
		// than one.
		left := math.Ceil(time.Until(job.StartBy).Seconds())
		if left <= 1 {
			return executor.Handle{}, executor.Errorf(executor.StartTimeout, "the task's start deadline passed before it reached fal")
		}
		header.Set("X-Fal-Request-Timeout", strconv.Itoa(int(left)))
	}
	resp, err := e.r.API.Do(ctx, http.MethodPost, e.r.Base+"/"+strings.Trim(model, "/"), in, header)
	if err != nil {
		return executor.Handle{}, err
	}
	if resp.Code < 200 || resp.Code > 299 { // §2.2: 200
		return executor.Handle{}, hosted.StatusError("submitting to fal "+model, resp)
	}
	var sub struct {
		RequestID string `json:"request_id"`
		state
	}
	if err := resp.Decode(&sub); err != nil {
		return executor.Handle{}, err
	}
	if sub.RequestID == "" || sub.StatusURL == "" || sub.ResponseURL == "" {
		return executor.Handle{}, executor.Errorf(executor.ProviderError, "fal's submit answer lacks request_id or its URLs")
	}
	raw, err := json.Marshal(sub.state)
	if err != nil {
		return executor.Handle{}, fmt.Errorf("encoding fal handle: %w", err)
	}
	return executor.Handle{Executor: e.r.Name, ExternalID: sub.RequestID, Version: executor.HandleVersion, State: raw}, nil
}

// shape turns a generation task's fields into fal's image input (§2.5):
// width and height become image_size, the four LoRA slots loras,
// reference_image_url and its strength image_url and strength. An editing
// task's image_url and reference_image_urls also become image_urls, the
// list multi-image edit models read (image_url stays for those that take
// one). Other fields (a training task's images_data_url, steps,
// trigger_word …) keep their names, which are fal's.
func shape(in map[string]any) {
	if refs, ok := in["reference_image_urls"].([]any); ok {
		var all []any
		if u, ok := in["image_url"].(string); ok && u != "" {
			all = append(all, u)
		}
		in["image_urls"] = append(all, refs...)
		delete(in, "reference_image_urls")
	}
	w, okW := in["width"]
	h, okH := in["height"]
	if okW && okH {
		in["image_size"] = map[string]any{"width": w, "height": h}
		delete(in, "width")
		delete(in, "height")
	}
	var loras []map[string]any
	for _, slot := range []string{"subject", "product", "style", "product2"} {
		path, ok := in[slot+"_model_path"].(string)
		weight, hasWeight := in[slot+"_lora_weight"]
		delete(in, slot+"_model_path")
		delete(in, slot+"_lora_weight")
		if !ok || path == "" {
			continue
		}
		l := map[string]any{"path": path}
		if hasWeight {
			l["scale"] = weight
		}
		loras = append(loras, l)
	}
	if len(loras) > 0 {
		in["loras"] = loras
	}
	if ref, ok := in["reference_image_url"]; ok {
		in["image_url"] = ref
		delete(in, "reference_image_url")
		if s, ok := in["reference_image_strength"]; ok {
			in["strength"] = s
		}
	}
	delete(in, "reference_image_strength")
}

// stateOf reads a handle's state; a handle of another layout is lost.
func stateOf(h executor.Handle) (state, error) {
	var s state
	if h.Version != executor.HandleVersion || json.Unmarshal(h.State, &s) != nil || s.StatusURL == "" {
		return s, executor.Errorf(executor.Lost, "fal handle of request %s cannot be read (version %d)", h.ExternalID, h.Version)
	}
	return s, nil
}

// status is a status answer (§2.2).
type status struct {
	Status        string `json:"status"`
	QueuePosition *int   `json:"queue_position"`
	// Metrics are optional on COMPLETED ("legacy apps might not return
	// metrics"): inference_time is the model's time, in seconds.
	Metrics struct {
		InferenceTime float64 `json:"inference_time"`
	} `json:"metrics"`
	Logs []struct {
		Message string `json:"message"`
	} `json:"logs"`
}

// poll reads the request's status once.
func (e *Executor) poll(ctx context.Context, id string, s state) (status, error) {
	var st status
	sep := "?"
	if strings.Contains(s.StatusURL, "?") {
		sep = "&"
	}
	resp, err := e.r.API.Do(ctx, http.MethodGet, s.StatusURL+sep+"logs=1", nil, nil)
	if err != nil {
		return st, err
	}
	switch resp.Code {
	case http.StatusOK, http.StatusAccepted: // §2.2: 202 while queued or running
	case http.StatusNotFound:
		return st, executor.Errorf(executor.Lost, "fal no longer knows request %s", id)
	default:
		return st, hosted.StatusError("polling fal request "+id, resp)
	}
	err = resp.Decode(&st)
	return st, err
}

// Wait implements executor.Executor: it polls the request with backoff,
// reporting the queue position and the progress its logs show, then
// fetches the result and downloads its files.
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	s, err := stateOf(h)
	if err != nil {
		return nil, err
	}
	m := hosted.Meter{R: r}
	var out *executor.Output
	err = hosted.Follow(ctx, e.r.Backoff, func(ctx context.Context) (status, error) {
		return e.poll(ctx, h.ExternalID, s)
	}, func(st status) (string, bool, error) {
		if err := e.report(ctx, &m, st); err != nil {
			return "", true, err
		}
		if st.Status != statusCompleted {
			return fmt.Sprint(st.Status, len(st.Logs)), false, nil
		}
		var err error
		out, err = e.result(ctx, job, h.ExternalID, s, &m)
		if out != nil {
			out.Usage.ProviderSeconds = st.Metrics.InferenceTime
		}
		return "", true, err
	})
	return out, err
}

// report turns a status into progress: 0 while queued, 10–90 while
// running as far as the logs tell.
func (e *Executor) report(ctx context.Context, m *hosted.Meter, st status) error {
	switch st.Status {
	case statusInQueue:
		stage := "queued at fal"
		if st.QueuePosition != nil {
			stage = fmt.Sprintf("queued at fal (position %d)", *st.QueuePosition)
		}
		return m.Report(ctx, 0, stage)
	case statusInProgress, statusCompleted:
		var logs strings.Builder
		for _, l := range st.Logs {
			logs.WriteString(l.Message)
			logs.WriteByte('\n')
		}
		return m.Running(ctx, logs.String(), "running at fal")
	default:
		// §2.7: never map an unknown status to "processing forever".
		return executor.Errorf(executor.ProviderError, "fal answered an unknown status %q", st.Status)
	}
}

// result fetches a COMPLETED request's result (§2.2): the model's output,
// or its error with the model's status code.
func (e *Executor) result(ctx context.Context, job *executor.Job, id string, s state, m *hosted.Meter) (*executor.Output, error) {
	resp, err := e.r.API.Do(ctx, http.MethodGet, s.ResponseURL, nil, nil)
	if err != nil {
		return nil, err
	}
	if resp.Code != http.StatusOK {
		return nil, e.resultError(id, resp)
	}
	var out map[string]any
	if err := resp.Decode(&out); err != nil {
		return nil, err
	}
	if blocked(out) {
		return nil, executor.Errorf(executor.SafetyBlocked, "fal's safety checker flagged every image of request %s", id)
	}
	if err := m.Report(ctx, 92, "downloading outputs"); err != nil {
		return nil, err
	}
	arts, err := hosted.Download(ctx, e.r.HTTP, job, hosted.URLs(out["images"]))
	if err != nil {
		return nil, err
	}
	if len(arts) == 0 {
		arts, err = hosted.Download(ctx, e.r.HTTP, job, hosted.URLs(out))
		if err != nil {
			return nil, err
		}
	}
	if err := m.Report(ctx, 100, "done"); err != nil {
		return nil, err
	}
	data := map[string]any{"request_id": id}
	for _, k := range []string{"seed", "has_nsfw_concepts", "timings"} {
		if v, ok := out[k]; ok {
			data[k] = v
		}
	}
	return &executor.Output{Artifacts: arts, Data: data}, nil
}

// resultError classifies a result that is an error (§2.2, §5.4): a
// request we cancelled is cancelled; a 504 with X-Fal-Request-Timeout-Type:
// user missed our own start deadline; the rest as its status says (4xx
// invalid input, 5xx the provider's).
func (e *Executor) resultError(id string, resp *hosted.Response) error {
	if e.r.Cancelled(id) {
		return executor.Errorf(executor.Cancelled, "fal request %s was cancelled", id)
	}
	if resp.Code == http.StatusGatewayTimeout && resp.Header.Get("X-Fal-Request-Timeout-Type") == "user" {
		return executor.Errorf(executor.StartTimeout, "fal request %s did not start before the task's start deadline", id)
	}
	if resp.Code == http.StatusNotFound {
		return executor.Errorf(executor.Lost, "fal no longer has the result of request %s (results are kept an hour, six minutes from 10 KB)", id)
	}
	return hosted.StatusError("fal request "+id+" failed", resp)
}

// blocked reports whether fal's safety checker flagged every image of a
// result (§2.5 has_nsfw_concepts): fal then returns black images.
func blocked(out map[string]any) bool {
	flags, ok := out["has_nsfw_concepts"].([]any)
	if !ok || len(flags) == 0 {
		return false
	}
	for _, f := range flags {
		if b, _ := f.(bool); !b {
			return false
		}
	}
	return true
}

// Cancel implements executor.Executor: PUT the cancel URL (§2.2 Cancel).
// A request already completed or unknown is not an error.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	s, err := stateOf(h)
	if err != nil {
		return nil // nothing we can reach: nothing to cancel
	}
	e.r.MarkCancelled(h.ExternalID)
	cancelURL := s.CancelURL
	if cancelURL == "" {
		cancelURL = s.ResponseURL + "/cancel"
	}
	// §2.2: CANCELLATION_REQUESTED (202), ALREADY_COMPLETED (400),
	// NOT_FOUND (404).
	return e.r.API.Cancel(ctx, http.MethodPut, cancelURL, "cancelling fal request "+h.ExternalID, http.StatusBadRequest, http.StatusNotFound)
}

// Recover implements executor.Executor: a request fal still answers for
// is waited on again; one it does not know is lost.
func (e *Executor) Recover(ctx context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	s, err := stateOf(h)
	if err != nil {
		return h, err
	}
	if _, err := e.poll(ctx, h.ExternalID, s); err != nil {
		return h, err
	}
	return h, nil
}
