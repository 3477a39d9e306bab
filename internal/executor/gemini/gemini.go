// Package gemini is the executor of Google's generateContent
// (reference/executors.md §4.2), on the Gemini API (an API key in
// x-goog-api-key) or on Vertex AI (a project and location, an OAuth2
// bearer token): the same request and answer, a different URL and
// authentication. Text and images go as parts of one request; the answer's
// text parts are a chat's text, and its last non-thought inlineData part
// is an image operation's output. A 200 without candidates (a blocked
// prompt), a text answer where an image was asked, or a finishReason
// other than STOP on an image fail with the category §4.2 implies.
//
// The calls are synchronous: cancelling drops the connection, and a
// handle saved by a process that ended is lost (Execute calls afresh).
package gemini

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/llm"
)

// Kind is the executor type name in the config file.
const Kind = "gemini"

// DefaultBaseURL is the Gemini API's host.
const DefaultBaseURL = "https://generativelanguage.googleapis.com"

// Settings are the settings of a gemini executor in the config file
// (`executors: {NAME: {type: gemini, …}}`). Without project it calls the
// Gemini API with key; with project it calls Vertex AI with token (or
// token_file).
type Settings struct {
	// BaseURL is the API's host: https://generativelanguage.googleapis.com
	// for the Gemini API, https://{location}-aiplatform.googleapis.com
	// (https://aiplatform.googleapis.com for location global) for Vertex.
	BaseURL string `json:"base_url"`
	// APIVersion is the version path: v1beta (Gemini API) or v1 (Vertex)
	// by default.
	APIVersion string `json:"api_version"`
	// Key is the Gemini API key, sent as x-goog-api-key; write
	// "${GEMINI_API_KEY}".
	Key string `json:"key"`
	// Project and Location select Vertex AI (location default global).
	Project  string `json:"project"`
	Location string `json:"location"`
	// Token is a Vertex OAuth2 access token sent as "Authorization:
	// Bearer"; write "${VERTEX_TOKEN}". Access tokens expire within an
	// hour: for a long-running server use TokenFile, a file holding the
	// current token that something else refreshes (read at every call).
	Token     string `json:"token"`
	TokenFile string `json:"token_file"`
	// Model is the model of every task type not in Models, which maps a
	// task type to its own (e.g. {generation: gemini-2.5-flash-image}).
	hosted.Models
	// GenerationConfig is merged into every request's generationConfig
	// (e.g. {thinkingConfig: {thinkingBudget: 0}}); SafetySettings is sent
	// as safetySettings.
	GenerationConfig map[string]any   `json:"generation_config"`
	SafetySettings   []map[string]any `json:"safety_settings"`
	// InlineInputMaxBytes bounds an input image sent inline (default
	// 4 MiB).
	InlineInputMaxBytes int64 `json:"inline_input_max_bytes"`
	// Stream streams chat answers (:streamGenerateContent?alt=sse), so
	// progress climbs while the answer arrives; default false (one
	// generateContent call). Image operations are never streamed.
	Stream bool `json:"stream"`
}

// Executor runs jobs on generateContent.
type Executor struct {
	*llm.Sync
	api       hosted.Client
	http      *http.Client
	prefix    string // base URL + version (+ Vertex's project path)
	vertex    bool
	key       string
	token     string
	tokenFile string
	models    hosted.Models
	genConfig map[string]any
	safety    []map[string]any
	inlineMax int64
	stream    bool
}

var _ executor.Executor = (*Executor)(nil)

// New returns the gemini executor called name; hc makes its calls (nil:
// http.DefaultClient).
func New(name string, s Settings, hc *http.Client) (*Executor, error) {
	if s.Model == "" && len(s.Models.Models) == 0 {
		return nil, errors.New("model (or models per task type) is required")
	}
	e := &Executor{
		http: hc, api: hosted.Client{HTTP: hc}, vertex: s.Project != "", key: s.Key, token: s.Token, tokenFile: s.TokenFile,
		models: s.Models, genConfig: s.GenerationConfig, safety: s.SafetySettings, inlineMax: s.InlineInputMaxBytes,
		stream: s.Stream,
	}
	base := strings.TrimRight(s.BaseURL, "/")
	version := s.APIVersion
	if e.vertex {
		if s.Token == "" && s.TokenFile == "" {
			return nil, errors.New("vertex (project set) needs token or token_file (an OAuth2 access token)")
		}
		loc := s.Location
		if loc == "" {
			loc = "global"
		}
		if base == "" {
			base = "https://" + loc + "-aiplatform.googleapis.com"
			if loc == "global" {
				base = "https://aiplatform.googleapis.com"
			}
		}
		if version == "" {
			version = "v1"
		}
		e.prefix = base + "/" + version + "/projects/" + url.PathEscape(s.Project) + "/locations/" + url.PathEscape(loc) + "/publishers/google"
	} else {
		if s.Key == "" {
			return nil, errors.New("key is required (write key: ${GEMINI_API_KEY}), or project and token for Vertex AI")
		}
		if base == "" {
			base = DefaultBaseURL
		}
		if version == "" {
			version = "v1beta"
		}
		e.prefix = base + "/" + version
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("base_url %q: want an http(s) URL", s.BaseURL)
	}
	e.Sync = llm.NewSync(name, llm.NeedsModel(s.Models), e.call)
	return e, nil
}

// auth returns the authentication header of a call (§4.2): the API key,
// or Vertex's bearer token, read from token_file when set.
func (e *Executor) auth() (http.Header, error) {
	if !e.vertex {
		return http.Header{"X-Goog-Api-Key": {e.key}}, nil
	}
	token := e.token
	if e.tokenFile != "" {
		raw, err := os.ReadFile(e.tokenFile)
		if err != nil {
			return nil, executor.Errorf(executor.ProviderUnavailable, "reading token_file: %w", err)
		}
		token = strings.TrimSpace(string(raw))
	}
	return http.Header{"Authorization": {"Bearer " + token}}, nil
}

// call sends the job's generateContent request and reads its answer.
func (e *Executor) call(ctx context.Context, job *executor.Job, f *llm.Fields, m *hosted.Meter) (*executor.Output, error) {
	body, err := e.request(ctx, job, f)
	if err != nil {
		return nil, err
	}
	header, err := e.auth()
	if err != nil {
		return nil, err
	}
	model := strings.TrimPrefix(f.ModelFor(e.models, job.Type), "models/")
	if err := m.Report(ctx, 10, "generating at "+e.Name()); err != nil {
		return nil, err
	}
	if e.stream && job.Operation == llm.OpChat {
		return e.chatStream(ctx, f, m, body, header, model)
	}
	resp, err := e.api.Do(ctx, http.MethodPost, e.prefix+"/models/"+url.PathEscape(model)+":generateContent", body, header)
	if err != nil {
		return nil, err
	}
	if resp.Code != http.StatusOK {
		return nil, statusError("generateContent", resp)
	}
	var ans response
	if err := resp.Decode(&ans); err != nil {
		return nil, err
	}
	if job.Operation == llm.OpChat {
		return chatOutput(ctx, m, &ans)
	}
	return e.imageOutput(ctx, job, m, &ans)
}

// statusError classifies an answer that is not a success: a
// google.rpc.Status body (§4.2 Errors) whose 429 waits for Retry-After
// or, without the header, for its RetryInfo's retryDelay ⚠; the rest as
// the HTTP status says (400 invalid_input, 503 "model is overloaded"
// provider_unavailable, 500 provider_error).
func statusError(what string, r *hosted.Response) error {
	if r.Code == http.StatusTooManyRequests && hosted.RetryAfter(r.Header) == 0 {
		if d := retryDelay(r.Body); d > 0 {
			return executor.Retry(d, fmt.Errorf("%s: HTTP 429: %s", what, hosted.Detail(r.Body)))
		}
	}
	return hosted.StatusError(what, r)
}
