package openai

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/llm"
	"github.com/computeserver/compute/internal/task"
)

// reportEvery spaces the progress reports of a streamed answer.
const reportEvery = 250 * time.Millisecond

// usage is the token count of an answer (§4.1).
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// answer is a chat answer, whole or assembled from a stream.
type answer struct {
	ID, Model    string
	Text         strings.Builder
	Refusal      strings.Builder
	FinishReason string
	Usage        *usage
}

// message is a choice's message (§4.1 Response) or a stream chunk's delta.
type message struct {
	Content *string `json:"content"`
	Refusal *string `json:"refusal"`
}

// choice is one of choices (§4.1); Delta in a stream chunk.
type choice struct {
	Message      message `json:"message"`
	Delta        message `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// completion is a chat.completion or a chat.completion.chunk (§4.1). A
// chunk's choices may be [] or null (the usage-only chunk, vLLM) and a
// stream may carry an error object.
type completion struct {
	ID      string    `json:"id"`
	Model   string    `json:"model"`
	Choices []choice  `json:"choices"`
	Usage   *usage    `json:"usage"`
	Error   *apiError `json:"error"`
}

// add takes in a completion or chunk; it reports whether it carried
// content.
func (a *answer) add(c *completion, streamed bool) bool {
	if c.ID != "" {
		a.ID = c.ID
	}
	if c.Model != "" {
		a.Model = c.Model
	}
	if c.Usage != nil {
		a.Usage = c.Usage
	}
	content := false
	if len(c.Choices) > 0 {
		ch := c.Choices[0]
		m := ch.Message
		if streamed {
			m = ch.Delta
		}
		if m.Content != nil && *m.Content != "" {
			a.Text.WriteString(*m.Content)
			content = true
		}
		if m.Refusal != nil {
			a.Refusal.WriteString(*m.Refusal)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			a.FinishReason = *ch.FinishReason
		}
	}
	return content
}

// chat sends the conversation and returns the answer: Data text,
// finish_reason, model, usage, and truncated when the answer hit
// max_tokens (finish_reason length).
func (e *Executor) chat(ctx context.Context, job *executor.Job, f *llm.Fields, m *hosted.Meter) (*executor.Output, error) {
	msgs, err := e.messages(ctx, job, f)
	if err != nil {
		return nil, err
	}
	body := map[string]any{"model": f.ModelFor(e.models, job.Type), "messages": msgs}
	if f.ResponseSchema != nil {
		// Structured output (§4.1 response_format): the answer is JSON
		// following the schema; the task type validates it.
		body["response_format"] = map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "response", "schema": f.ResponseSchema}}
	}
	if f.Temperature != nil {
		body["temperature"] = *f.Temperature
	}
	if f.MaxTokens > 0 {
		body[e.maxParam] = f.MaxTokens
	}
	if f.Seed != nil {
		body["seed"] = *f.Seed
	}
	hosted.Merge(body, e.chatIn)
	accept := "application/json"
	if e.stream {
		body["stream"] = true
		body["stream_options"] = map[string]any{"include_usage": true}
		accept = "text/event-stream"
	}
	req, err := e.post(ctx, "/chat/completions", body, accept)
	if err != nil {
		return nil, err
	}
	if err := m.Report(ctx, 5, "sent to "+e.Name()); err != nil {
		return nil, err
	}
	resp, err := e.api.Open(req)
	if err != nil {
		return nil, err
	}
	var a answer
	ctype, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case resp.StatusCode != http.StatusOK:
		r, err := hosted.Read(resp)
		if err != nil {
			return nil, err
		}
		return nil, statusError("chat completion", r)
	case ctype == "text/event-stream":
		err = e.readStream(ctx, resp, f, m, &a)
	default:
		// Not streamed (stream: false, or a server that ignores it).
		var r *hosted.Response
		if r, err = hosted.Read(resp); err == nil {
			var c completion
			if err = r.Decode(&c); err == nil {
				a.add(&c, false)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return finish(ctx, m, &a)
}

// readStream reads a streamed answer (§4.1 Streaming) into a, reporting
// progress as content arrives: 10–90 % by chunks against max_tokens (a
// chunk is about a token). The stream must end with [DONE] or at least
// with a finish_reason; one that breaks off before is a provider error
// (retried).
func (e *Executor) readStream(ctx context.Context, resp *http.Response, f *llm.Fields, m *hosted.Meter, a *answer) error {
	defer resp.Body.Close()
	budget := f.MaxTokens
	if budget <= 0 {
		budget = defaultTokenBudget
	}
	chunks, done := 0, false
	var last time.Time
	var repErr error // the run's own failure to report, not the provider's
	err := llm.ReadEvents(resp.Body, func(data []byte) (bool, error) {
		if string(bytes.TrimSpace(data)) == "[DONE]" {
			done = true
			return true, nil
		}
		var c completion
		if err := json.Unmarshal(data, &c); err != nil {
			return true, executor.Errorf(executor.ProviderError, "an undecodable chunk in the stream: %w", err)
		}
		if c.Error != nil {
			return true, streamError(c.Error)
		}
		if a.add(&c, true) {
			chunks++
			if now := time.Now(); now.Sub(last) >= reportEvery {
				last = now
				pct := 10 + 80*min(1, float64(chunks)/float64(budget))
				if repErr = m.Report(ctx, pct, fmt.Sprintf("streaming (%d chunks)", chunks)); repErr != nil {
					return true, nil
				}
			}
		}
		return false, nil
	})
	switch {
	case repErr != nil:
		return repErr
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil && errors.As(err, new(*executor.Error)):
		return err // classified already: an error event, an odd chunk
	case err != nil:
		return executor.Classify(executor.ProviderError, fmt.Errorf("the stream broke off after %d chunks: %w", chunks, err))
	case !done && a.FinishReason == "":
		return executor.Errorf(executor.ProviderError, "the stream ended after %d chunks without a finish_reason or [DONE]", chunks)
	}
	return nil
}

// finish turns an answer into the output: a content filter's stop
// (finish_reason content_filter) or a refusal without an answer is
// safety_blocked; an answer cut at max_tokens (length) is kept, marked
// truncated.
func finish(ctx context.Context, m *hosted.Meter, a *answer) (*executor.Output, error) {
	text := a.Text.String()
	switch {
	case a.FinishReason == "content_filter":
		return nil, executor.Errorf(executor.SafetyBlocked, "the answer was stopped by a content filter (finish_reason content_filter)")
	case text == "" && a.Refusal.Len() > 0:
		return nil, executor.Errorf(executor.SafetyBlocked, "the model refused: %s", clip(a.Refusal.String()))
	}
	data := map[string]any{"text": text, "finish_reason": a.FinishReason, "truncated": a.FinishReason == "length"}
	if a.Model != "" {
		data["model"] = a.Model
	}
	if a.ID != "" {
		data["id"] = a.ID
	}
	if a.Usage != nil {
		data["usage"] = map[string]any{
			"prompt_tokens": a.Usage.PromptTokens, "completion_tokens": a.Usage.CompletionTokens, "total_tokens": a.Usage.TotalTokens,
		}
	}
	if err := m.Report(ctx, 100, "done"); err != nil {
		return nil, err
	}
	out := &executor.Output{Data: data}
	if a.Usage != nil {
		out.Usage = task.Usage{InputTokens: int64(a.Usage.PromptTokens), OutputTokens: int64(a.Usage.CompletionTokens)}
	}
	return out, nil
}

// messages builds the conversation: the system instruction, the task's
// messages, then its prompt as the user's turn, with the input image (if
// any) as a data URL part of that turn (§4.1 content parts).
func (e *Executor) messages(ctx context.Context, job *executor.Job, f *llm.Fields) ([]map[string]any, error) {
	var out []map[string]any
	if f.System != "" {
		out = append(out, map[string]any{"role": "system", "content": f.System})
	}
	for _, m := range f.Messages {
		out = append(out, map[string]any{"role": m.Role, "content": m.Content})
	}
	if f.Prompt == "" && f.ImageURL == "" {
		return out, nil
	}
	if f.ImageURL == "" {
		return append(out, map[string]any{"role": "user", "content": f.Prompt}), nil
	}
	img, err := llm.ReadImage(ctx, job, "image_url", f.ImageURL, e.inlineMax)
	if err != nil {
		return nil, err
	}
	parts := []map[string]any{}
	if f.Prompt != "" {
		parts = append(parts, map[string]any{"type": "text", "text": f.Prompt})
	}
	parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]any{
		"url": "data:" + img.MIME + ";base64," + base64.StdEncoding.EncodeToString(img.Data),
	}})
	return append(out, map[string]any{"role": "user", "content": parts}), nil
}

// clip shortens a message for an error.
func clip(s string) string {
	const n = 300
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
