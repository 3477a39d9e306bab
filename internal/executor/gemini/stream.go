package gemini

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/llm"
)

// reportEvery spaces the progress reports of a streamed answer.
const reportEvery = 250 * time.Millisecond

// defaultTokenBudget is the answer length progress is measured against
// when the task sets no max_tokens.
const defaultTokenBudget = 1000

// chatStream makes a chat as :streamGenerateContent?alt=sse (§4.2
// Endpoints): the answer arrives as Server-Sent Events, each a
// GenerateContentResponse with the next text parts; the last carries the
// finishReason and the usage. Progress climbs from 10 to 90 % with the
// text received against max_tokens (four characters a token), at most
// every reportEvery. The assembled answer is judged as a whole one is
// (chatOutput); a stream that breaks off, or ends without a finishReason,
// is a provider error (retried).
func (e *Executor) chatStream(ctx context.Context, f *llm.Fields, m *hosted.Meter, body map[string]any, header http.Header, model string) (*executor.Output, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "encoding the request: %w", err)
	}
	u := e.prefix + "/models/" + url.PathEscape(model) + ":streamGenerateContent?alt=sse"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(raw))
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "building the request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := e.api.Open(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		r, err := hosted.Read(resp)
		if err != nil {
			return nil, err
		}
		return nil, statusError("streamGenerateContent", r)
	}
	defer resp.Body.Close()
	budget := f.MaxTokens
	if budget <= 0 {
		budget = defaultTokenBudget
	}
	var (
		whole  response
		text   strings.Builder
		finish string
		seen   bool // a candidate arrived
		events int
		last   time.Time
		repErr error
	)
	err = llm.ReadEvents(resp.Body, func(data []byte) (bool, error) {
		var c struct {
			response
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			return true, executor.Errorf(executor.ProviderError, "an undecodable event in the stream: %w", err)
		}
		if c.Error != nil {
			return true, executor.FromStatus(c.Error.Code, fmt.Errorf("the stream carried an error (%d): %s", c.Error.Code, c.Error.Message))
		}
		events++
		if c.PromptFeedback != nil {
			whole.PromptFeedback = c.PromptFeedback
		}
		if c.UsageMetadata != nil {
			whole.UsageMetadata = c.UsageMetadata
		}
		if c.ModelVersion != "" {
			whole.ModelVersion = c.ModelVersion
		}
		if c.ResponseID != "" {
			whole.ResponseID = c.ResponseID
		}
		if len(c.Candidates) > 0 {
			seen = true
			for _, p := range c.Candidates[0].Content.Parts {
				if !p.Thought {
					text.WriteString(p.Text)
				}
			}
			if r := c.Candidates[0].FinishReason; r != "" {
				finish = r
				whole.finishMessage(c.Candidates[0].FinishMessage)
			}
		}
		if now := time.Now(); text.Len() > 0 && now.Sub(last) >= reportEvery {
			last = now
			pct := 10 + 80*min(1, float64(text.Len()/4)/float64(budget))
			if repErr = m.Report(ctx, pct, fmt.Sprintf("streaming (%d chunks)", events)); repErr != nil {
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case repErr != nil:
		return nil, repErr
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil && errors.As(err, new(*executor.Error)):
		return nil, err
	case err != nil:
		return nil, executor.Classify(executor.ProviderError, fmt.Errorf("the stream broke off after %d events: %w", events, err))
	case seen && finish == "":
		return nil, executor.Errorf(executor.ProviderError, "the stream ended after %d events without a finishReason", events)
	}
	if seen {
		whole.Candidates = append(whole.Candidates, whole.candidate(text.String(), finish))
	}
	return chatOutput(ctx, m, &whole)
}
