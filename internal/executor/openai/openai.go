// Package openai is the executor of OpenAI-compatible APIs
// (reference/executors.md §4.1): OpenAI itself, vLLM, Ollama, LiteLLM and
// the like. A chat is POST {base_url}/chat/completions, streamed as
// Server-Sent Events by default (progress by tokens received against
// max_tokens); an image is POST {base_url}/images/generations, or
// /images/edits (multipart) when the task gives an input image. Image
// answers in b64_json are decoded and ones by URL downloaded at once (the
// URLs live 60 minutes), both into the artifact store.
//
// The calls are synchronous: cancelling drops the connection, and a
// handle saved by a process that ended is lost (Execute calls afresh).
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/llm"
)

// Kind is the executor type name in the config file.
const Kind = "openai"

// DefaultBaseURL is OpenAI's API, version path included, as the OpenAI
// SDKs write it.
const DefaultBaseURL = "https://api.openai.com/v1"

// defaultTokenBudget is the answer length progress is measured against
// when the task sets no max_tokens.
const defaultTokenBudget = 1000

// Settings are the settings of an openai executor in the config file
// (`executors: {NAME: {type: openai, …}}`).
type Settings struct {
	// BaseURL is the API's base URL with its version path
	// (https://api.openai.com/v1, http://vllm:8000/v1).
	BaseURL string `json:"base_url"`
	// Key is the API key, sent as "Authorization: Bearer"; write
	// "${OPENAI_API_KEY}". Empty sends none (a local server).
	Key string `json:"key"`
	// Model is the model of every task type not in Models, which maps a
	// task type to its own (e.g. {generation: gpt-image-1}).
	hosted.Models
	// Stream streams chat answers (default true); false waits for the
	// whole answer.
	Stream *bool `json:"stream"`
	// MaxTokensParam is the request field a task's max_tokens goes in:
	// max_tokens (default) or max_completion_tokens (newer OpenAI models).
	MaxTokensParam string `json:"max_tokens_param"`
	// ChatInput and ImageInput are fixed request fields added to every
	// chat, and every image request, over the task's (e.g. {quality:
	// high, output_format: png}).
	ChatInput  map[string]any `json:"chat_input"`
	ImageInput map[string]any `json:"image_input"`
	// InlineInputMaxBytes bounds an input image (default 4 MiB).
	InlineInputMaxBytes int64 `json:"inline_input_max_bytes"`
}

// Executor runs jobs on an OpenAI-compatible API.
type Executor struct {
	*llm.Sync
	api       hosted.Client
	http      *http.Client
	base      string
	models    hosted.Models
	stream    bool
	maxParam  string
	chatIn    map[string]any
	imageIn   map[string]any
	inlineMax int64
}

var _ executor.Executor = (*Executor)(nil)

// New returns the openai executor called name; hc makes its calls (nil:
// http.DefaultClient).
func New(name string, s Settings, hc *http.Client) (*Executor, error) {
	if s.Model == "" && len(s.Models.Models) == 0 {
		return nil, errors.New("model (or models per task type) is required")
	}
	switch s.MaxTokensParam {
	case "":
		s.MaxTokensParam = "max_tokens"
	case "max_tokens", "max_completion_tokens":
	default:
		return nil, fmt.Errorf("max_tokens_param %q: want max_tokens or max_completion_tokens", s.MaxTokensParam)
	}
	base := strings.TrimRight(s.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("base_url %q: want an http(s) URL", s.BaseURL)
	}
	e := &Executor{
		http: hc, base: base, models: s.Models, stream: s.Stream == nil || *s.Stream,
		maxParam: s.MaxTokensParam, chatIn: s.ChatInput, imageIn: s.ImageInput, inlineMax: s.InlineInputMaxBytes,
	}
	if s.Key != "" {
		e.api.Authorization = "Bearer " + s.Key
	}
	e.api.HTTP = hc
	e.Sync = llm.NewSync(name, llm.NeedsModel(s.Models), e.call)
	return e, nil
}

// call runs the job's operation.
func (e *Executor) call(ctx context.Context, job *executor.Job, f *llm.Fields, m *hosted.Meter) (*executor.Output, error) {
	if job.Operation == llm.OpChat {
		return e.chat(ctx, job, f, m)
	}
	return e.image(ctx, job, f, m)
}

// apiError is OpenAI's error object (§4.1 Errors). Code is a string on
// OpenAI and a number on some compatible servers.
type apiError struct {
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

// code is the error's code as text.
func (a *apiError) code() string {
	var s string
	if json.Unmarshal(a.Code, &s) == nil {
		return s
	}
	return strings.Trim(string(a.Code), `"`)
}

// safety reports whether the error is a content filter's refusal: the
// image safety system's content_policy_violation, gpt-image-1's
// moderation_blocked.
func (a *apiError) safety() bool {
	c := a.code()
	return c == "content_policy_violation" || c == "moderation_blocked" || a.Type == "content_policy_violation" ||
		strings.Contains(strings.ToLower(a.Message), "safety system")
}

// quota reports whether a 429 is an exhausted quota rather than a rate
// limit (§4.1: "distinguish by type/code").
func (a *apiError) quota() bool {
	return a.Type == "insufficient_quota" || a.code() == "insufficient_quota"
}

// statusError classifies an answer that is not a success (§4.1 Errors): a
// content filter's refusal is safety_blocked; a 429 of an exhausted quota
// is provider_unavailable (the account cannot run anything until someone
// pays, so fallbacks take over); a 429 otherwise is rate_limited for its
// Retry-After; the rest as the status says.
func statusError(what string, r *hosted.Response) error {
	var b struct {
		Error *apiError `json:"error"`
	}
	if json.Unmarshal(r.Body, &b) == nil && b.Error != nil {
		switch {
		case b.Error.safety():
			return executor.Errorf(executor.SafetyBlocked, "%s: HTTP %d: %s", what, r.Code, b.Error.Message)
		case r.Code == http.StatusTooManyRequests && b.Error.quota():
			return executor.Errorf(executor.ProviderUnavailable, "%s: the account's quota is exhausted: %s", what, b.Error.Message)
		}
	}
	return hosted.StatusError(what, r)
}

// streamError classifies an error object sent inside a stream, where no
// status code comes with it: by its type.
func streamError(a *apiError) error {
	err := fmt.Errorf("the stream carried an error (%s): %s", a.Type, a.Message)
	switch {
	case a.safety():
		return executor.Classify(executor.SafetyBlocked, err)
	case a.quota():
		return executor.Classify(executor.ProviderUnavailable, err)
	case a.Type == "rate_limit_error" || a.code() == "rate_limit_exceeded":
		return executor.Retry(hosted.DefaultRetryAfter, err)
	case a.Type == "invalid_request_error":
		return executor.Classify(executor.InvalidInput, err)
	}
	return executor.Classify(executor.ProviderError, err)
}

// post builds a JSON POST of body to path under the base URL.
func (e *Executor) post(ctx context.Context, path string, body any, accept string) (*http.Request, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "encoding the request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+path, bytes.NewReader(data))
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", accept)
	return req, nil
}
