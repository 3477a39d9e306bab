package llminteraction

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
)

// CategoryInvalidOutput is the error category of an answer that is not
// JSON following the task's response_schema. It is not retried: with
// structured output the provider already held the model to the schema, so
// a breach is systematic (an answer cut at max_tokens, a model or server
// that ignores response formats) and another attempt would pay for the
// same answer; the client decides (more max_tokens, another model).
const CategoryInvalidOutput = "invalid_output"

// OutputError is an answer that breaks the task's response_schema.
type OutputError struct {
	// Problems say how: not JSON, or the schema's violations.
	Problems []string
	// Truncated is set when the answer was cut at max_tokens, the likely
	// cause.
	Truncated bool
}

// Error implements error.
func (e *OutputError) Error() string {
	msg := "the answer does not follow response_schema: " + strings.Join(e.Problems, "; ")
	if e.Truncated {
		msg += " (the answer was cut at max_tokens: allow more tokens)"
	}
	return msg
}

// ErrorCategory implements task.Classified.
func (e *OutputError) ErrorCategory() string { return CategoryInvalidOutput }

// Retryable implements task.Classified: no (see CategoryInvalidOutput).
func (e *OutputError) Retryable() bool { return false }

var _ task.Classified = (*OutputError)(nil)

// Output is the result data of an llm_interaction task.
type Output struct {
	// Text is the model's answer.
	Text string `json:"text"`
	// JSON is the answer parsed, when the task gave a response_schema.
	JSON map[string]any `json:"json,omitempty"`
	// FinishReason is why the answer ended, as the provider says;
	// Truncated is set when it hit max_tokens.
	FinishReason string `json:"finish_reason,omitempty"`
	Truncated    bool   `json:"truncated"`
	// Model is the model that answered, when the provider says.
	Model string `json:"model,omitempty"`
	// Usage counts tokens: prompt_tokens, completion_tokens,
	// total_tokens.
	Usage map[string]any `json:"usage,omitempty"`
}

// Processor runs llm_interaction tasks on the executor their
// provider_type names.
type Processor struct {
	fetcher   *artifact.Fetcher
	executors *executor.Set
}

var (
	_ registry.ProcessorOf[Fields] = (*Processor)(nil)
	_ registry.ResumerOf[Fields]   = (*Processor)(nil)
)

// Process implements registry.ProcessorOf.
func (p *Processor) Process(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	f := job.Fields
	name := cmp.Or(job.Task.ProviderType, ProviderOpenAI)
	if err := f.Validate(); err != nil {
		return nil, task.Permanent(fmt.Errorf("invalid fields: %w", err))
	}
	ej, err := executor.FromJob(job, Operation)
	if err != nil {
		return nil, err
	}
	tenant := job.Task.OriginTenantID
	ej.OpenInput = func(ctx context.Context, url string) ([]byte, error) {
		data, _, err := p.fetcher.Open(ctx, tenant, url)
		return data, err
	}
	// The executor reports 0–100 % as the answer streams in; the last
	// twentieth is for checking and saving it.
	progress := executor.ReporterFunc(func(ctx context.Context, pct float64, stage string) error {
		return job.Progress(ctx, pct*0.95, stage)
	})
	out, err := p.executors.Run(ctx, name, job.Task.ProviderRequested, ej, progress)
	if err != nil {
		return nil, err
	}
	res := Output{}
	res.Text, _ = out.Data["text"].(string)
	res.FinishReason, _ = out.Data["finish_reason"].(string)
	res.Truncated, _ = out.Data["truncated"].(bool)
	res.Model, _ = out.Data["model"].(string)
	if res.Model == "" {
		res.Model, _ = out.Data["model_version"].(string)
	}
	res.Usage, _ = out.Data["usage"].(map[string]any)
	if f.ResponseSchema != nil {
		parsed, err := parseAnswer(res.Text, f.ResponseSchema)
		if err != nil {
			var oe *OutputError
			if errors.As(err, &oe) {
				oe.Truncated = res.Truncated
			}
			return nil, fmt.Errorf("executor %s: %w", name, err)
		}
		res.JSON = parsed
	}
	f.ResponseText, f.ResponseJSON = &res.Text, res.JSON
	if res.FinishReason != "" {
		f.FinishReason = &res.FinishReason
	}
	if err := job.SaveFields(ctx); err != nil {
		return nil, fmt.Errorf("saving the answer: %w", err)
	}
	if err := job.Progress(ctx, 100, "done"); err != nil {
		return nil, err
	}
	return &task.Result{Artifacts: []task.Artifact{}, Data: res}, nil
}

// parseAnswer reads an answer as the JSON object schema asks for. A
// Markdown code fence around it (```json … ```), which some models add
// despite being asked for JSON, is taken off.
func parseAnswer(text string, schema map[string]any) (map[string]any, error) {
	c, err := checkSchema(schema)
	if err != nil {
		return nil, task.Permanent(fmt.Errorf("response_schema: %w", err))
	}
	s := strings.TrimSpace(text)
	if rest, ok := strings.CutPrefix(s, "```"); ok {
		if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
			rest = rest[nl+1:]
		}
		s = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "```"))
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &OutputError{Problems: []string{fmt.Sprintf("it is not JSON (%v): %s", err, clip(text))}}
	}
	if dec.More() {
		return nil, &OutputError{Problems: []string{"it has text after the JSON value: " + clip(text)}}
	}
	if problems := c.validate(v, 5); len(problems) > 0 {
		return nil, &OutputError{Problems: problems}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, &OutputError{Problems: []string{"it is not a JSON object: " + clip(text)}}
	}
	return obj, nil
}

// clip shortens an answer for a message.
func clip(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%q…", s[:200])
	}
	return fmt.Sprintf("%q", s)
}

// Resume implements registry.ResumerOf: a chat is a synchronous call that
// dies with its process, so a resumed task calls again.
func (p *Processor) Resume(ctx context.Context, job *registry.Job[Fields]) (*task.Result, error) {
	return p.Process(ctx, job)
}
