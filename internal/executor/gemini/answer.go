package gemini

import (
	"context"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/task"
)

// status is a google.rpc.Status error body (§4.2 Errors).
type status struct {
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type       string `json:"@type"`
			RetryDelay string `json:"retryDelay"`
		} `json:"details"`
	} `json:"error"`
}

// blob is an inlineData part's content.
type blob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

// part is one part of a candidate's content (§4.2 Response). Thought
// marks Gemini 3's interim parts ⚠; inline_data is accepted too, since
// REST examples write snake case.
type part struct {
	Text       string `json:"text"`
	Thought    bool   `json:"thought"`
	InlineData *blob  `json:"inlineData"`
	InlineSnk  *blob  `json:"inline_data"`
}

// image is the part's inline data, either spelling.
func (p part) image() *blob {
	if p.InlineData != nil {
		return p.InlineData
	}
	return p.InlineSnk
}

// candidate is one candidate of an answer (§4.2 Response).
type candidate struct {
	Content struct {
		Parts []part `json:"parts"`
	} `json:"content"`
	FinishReason  string `json:"finishReason"`
	FinishMessage string `json:"finishMessage"`
}

// response is a generateContent answer (§4.2 Response), or one event of a
// streamed one.
type response struct {
	Candidates     []candidate `json:"candidates"`
	PromptFeedback *struct {
		BlockReason        string `json:"blockReason"`
		BlockReasonMessage string `json:"blockReasonMessage"`
	} `json:"promptFeedback"`
	UsageMetadata *struct {
		PromptTokenCount     int `json:"promptTokenCount"`
		CandidatesTokenCount int `json:"candidatesTokenCount"`
		TotalTokenCount      int `json:"totalTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string `json:"modelVersion"`
	ResponseID   string `json:"responseId"`

	// message is a streamed answer's finishMessage, kept for candidate.
	message string
}

// finishMessage keeps a streamed answer's finishMessage.
func (a *response) finishMessage(m string) {
	if m != "" {
		a.message = m
	}
}

// candidate assembles a streamed answer's candidate: its text, finish
// reason and message.
func (a *response) candidate(text, finish string) candidate {
	var c candidate
	c.Content.Parts = []part{{Text: text}}
	c.FinishReason, c.FinishMessage = finish, a.message
	return c
}

// safetyReasons are the finishReasons of a content filter (§4.2).
var safetyReasons = map[string]bool{
	"SAFETY": true, "RECITATION": true, "BLOCKLIST": true, "PROHIBITED_CONTENT": true, "SPII": true,
	"IMAGE_SAFETY": true, "IMAGE_PROHIBITED_CONTENT": true, "IMAGE_RECITATION": true, "MODEL_ARMOR": true,
}

// finishError classifies a finishReason that ends a job: a content
// filter's is safety_blocked, LANGUAGE (an unsupported language)
// invalid_input, the rest (OTHER, NO_IMAGE, IMAGE_OTHER, MAX_TOKENS on an
// image, MALFORMED_FUNCTION_CALL …) provider_error, retried.
func finishError(reason, message string) error {
	what := "the answer stopped with finishReason " + reason
	if message != "" {
		what += ": " + message
	}
	switch {
	case safetyReasons[reason]:
		return executor.Errorf(executor.SafetyBlocked, "%s", what)
	case reason == "LANGUAGE":
		return executor.Errorf(executor.InvalidInput, "%s", what)
	}
	return executor.Errorf(executor.ProviderError, "%s", what)
}

// first checks that the answer has a candidate: a 200 without one is a
// blocked prompt when promptFeedback names a blockReason (safety_blocked,
// whatever the reason: SAFETY, OTHER, BLOCKLIST, PROHIBITED_CONTENT …),
// else a provider error.
func (a *response) first() error {
	if len(a.Candidates) > 0 {
		return nil
	}
	if pf := a.PromptFeedback; pf != nil && pf.BlockReason != "" {
		msg := "the prompt was blocked (blockReason " + pf.BlockReason + ")"
		if pf.BlockReasonMessage != "" {
			msg += ": " + pf.BlockReasonMessage
		}
		return executor.Errorf(executor.SafetyBlocked, "%s", msg)
	}
	return executor.Errorf(executor.ProviderError, "the answer has no candidates")
}

// text joins the first candidate's non-thought text parts.
func (a *response) text() string {
	var b strings.Builder
	for _, p := range a.Candidates[0].Content.Parts {
		if !p.Thought {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// data is the answer's result data: text, finish_reason, usage (named as
// the openai executor names it), model_version, response_id.
func (a *response) data() map[string]any {
	d := map[string]any{"text": a.text(), "finish_reason": a.Candidates[0].FinishReason}
	if u := a.UsageMetadata; u != nil {
		d["usage"] = map[string]any{"prompt_tokens": u.PromptTokenCount, "completion_tokens": u.CandidatesTokenCount, "total_tokens": u.TotalTokenCount}
	}
	if a.ModelVersion != "" {
		d["model_version"] = a.ModelVersion
	}
	if a.ResponseID != "" {
		d["response_id"] = a.ResponseID
	}
	return d
}

// usage is the answer's token counts (usageMetadata): the prompt's and
// the candidates'.
func (a *response) usage() task.Usage {
	if u := a.UsageMetadata; u != nil {
		return task.Usage{InputTokens: int64(u.PromptTokenCount), OutputTokens: int64(u.CandidatesTokenCount)}
	}
	return task.Usage{}
}

// chatOutput is a chat's result (§4.2 "llm_interaction = join
// candidates[0].content.parts[].text"): STOP is the answer; MAX_TOKENS
// the truncated answer, marked truncated; other reasons fail
// (finishError).
func chatOutput(ctx context.Context, m *hosted.Meter, a *response) (*executor.Output, error) {
	if err := a.first(); err != nil {
		return nil, err
	}
	c := a.Candidates[0]
	switch c.FinishReason {
	case "", "STOP", "FINISH_REASON_UNSPECIFIED", "MAX_TOKENS":
	default:
		return nil, finishError(c.FinishReason, c.FinishMessage)
	}
	d := a.data()
	d["truncated"] = c.FinishReason == "MAX_TOKENS"
	if err := m.Report(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &executor.Output{Data: d, Usage: a.usage()}, nil
}

// imageOutput stores an image operation's output (§4.2 "editing = … the
// last non-thought inlineData part"): a finishReason other than STOP
// fails (finishError), and so does STOP without an image (a text answer
// where an image was asked: provider_error, retried, since the model
// often draws on a second try; Vertex says NO_IMAGE).
func (e *Executor) imageOutput(ctx context.Context, job *executor.Job, m *hosted.Meter, a *response) (*executor.Output, error) {
	if err := a.first(); err != nil {
		return nil, err
	}
	c := a.Candidates[0]
	if c.FinishReason != "" && c.FinishReason != "STOP" {
		return nil, finishError(c.FinishReason, c.FinishMessage)
	}
	var img *blob
	for _, p := range c.Content.Parts {
		if b := p.image(); b != nil && !p.Thought && b.Data != "" {
			img = b
		}
	}
	if img == nil {
		text := a.text()
		if len(text) > 300 {
			text = text[:300] + "…"
		}
		return nil, executor.Errorf(executor.ProviderError, "the model answered text where an image was asked: %q", text)
	}
	if err := m.Report(ctx, 90, "storing outputs"); err != nil {
		return nil, err
	}
	arts, err := hosted.Download(ctx, e.http, job, []string{"data:" + img.MimeType + ";base64," + img.Data})
	if err != nil {
		return nil, err
	}
	if err := m.Report(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &executor.Output{Artifacts: arts, Data: a.data(), Usage: a.usage()}, nil
}
