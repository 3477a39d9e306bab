package task

import (
	"context"
	"sync"
)

// Usage is what the services a task ran on say they spent on it: the
// seconds of service time they report and the tokens of language
// models. Each field is 0 when no service reported it. A task's Usage
// sums the reports of every executor call that returned its output
// (attempts and failovers); a call that ended in an error reports
// nothing, so Usage is a lower bound of what was spent.
type Usage struct {
	// ProviderSeconds is the service's own measure of its work
	// (Replicate's and Cog's metrics.predict_time, fal's
	// metrics.inference_time, ComfyUI's execution_start to
	// execution_success), without queueing or our polling.
	ProviderSeconds float64 `json:"provider_seconds" doc:"Seconds of work the services reported for the task (Replicate and Cog predict_time, fal inference_time, ComfyUI execution start to success), summed over its runs; 0 when none reported any."`
	// InputTokens and OutputTokens are a language model's prompt and
	// answer tokens (OpenAI usage.prompt_tokens/completion_tokens or an
	// image model's input_tokens/output_tokens, Gemini
	// usageMetadata.promptTokenCount/candidatesTokenCount).
	InputTokens  int64 `json:"input_tokens" doc:"Prompt (input) tokens a language or image model reported, summed over the task's runs."`
	OutputTokens int64 `json:"output_tokens" doc:"Answer (output) tokens a language or image model reported, summed over the task's runs."`
}

// IsZero reports whether u reports nothing.
func (u Usage) IsZero() bool { return u == Usage{} }

// Plus returns u with v added.
func (u Usage) Plus(v Usage) Usage {
	return Usage{ProviderSeconds: u.ProviderSeconds + v.ProviderSeconds,
		InputTokens: u.InputTokens + v.InputTokens, OutputTokens: u.OutputTokens + v.OutputTokens}
}

// UsageMeter adds up the usage reported during one run. It is safe for
// concurrent use.
type UsageMeter struct {
	mu  sync.Mutex
	sum Usage
}

// Add adds u.
func (m *UsageMeter) Add(u Usage) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sum = m.sum.Plus(u)
}

// Total returns the sum so far.
func (m *UsageMeter) Total() Usage {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sum
}

type usageKey struct{}

// WithUsageMeter returns ctx carrying m: the engine gives each run one,
// so the usage the executors report (ReportUsage) reaches the write of
// the run's outcome whatever the processor does with their outputs.
func WithUsageMeter(ctx context.Context, m *UsageMeter) context.Context {
	return context.WithValue(ctx, usageKey{}, m)
}

// ReportUsage adds u to ctx's meter, if it has one.
func ReportUsage(ctx context.Context, u Usage) {
	if u.IsZero() {
		return
	}
	if m, ok := ctx.Value(usageKey{}).(*UsageMeter); ok {
		m.Add(u)
	}
}
