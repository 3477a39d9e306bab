package gemini_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/gemini"
	"github.com/computeserver/compute/internal/executor/gemini/geminifake"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
)

// TestStreamedChat: with stream set, a chat goes to
// :streamGenerateContent?alt=sse; the answer is assembled from the events
// (thought parts skipped), progress climbs while it arrives, and the
// usage and finish reason of the last event are kept.
func TestStreamedChat(t *testing.T) {
	t.Parallel()
	text := strings.TrimSpace(strings.Repeat("linen breathes in summer heat ", 30))
	s := newService(t, func(context.Context, geminifake.Request) geminifake.Reply {
		return geminifake.Reply{Text: text, ChunkWords: 2, Thoughts: true}
	})
	ex := s.executor(t, func(set *gemini.Settings) { set.Stream = true })
	out, _, p, err := hostedtest.Exec(t, ex, "llm_interaction", "chat", map[string]any{"prompt": "why linen?", "max_tokens": 100}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data["text"] != text || out.Data["finish_reason"] != "STOP" || out.Data["truncated"] != false {
		t.Errorf("data %v", out.Data)
	}
	if u, ok := out.Data["usage"].(map[string]any); !ok || u["completion_tokens"] != 150 {
		t.Errorf("usage %v", out.Data["usage"])
	}
	if u := out.Usage; u.InputTokens <= 0 || u.OutputTokens != 150 {
		t.Errorf("Output.Usage %+v, want the last event's usageMetadata", u)
	}
	r := s.fake.Requests()[0]
	if !r.Stream || !strings.HasSuffix(r.Path, ":streamGenerateContent") {
		t.Errorf("request to %s (stream %v)", r.Path, r.Stream)
	}
	// 10 % when sent, a streaming report, 100 at the end.
	pcts := p.All()
	if len(pcts) < 3 || pcts[1] <= 10 || pcts[1] > 90 || pcts[len(pcts)-1] != 100 {
		t.Errorf("progress %v", pcts)
	}
}

// TestStreamedChatFailures: a streamed chat fails as a whole one does.
func TestStreamedChatFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply geminifake.Reply
		want  executor.Category
		check func(t *testing.T, out *executor.Output)
	}{
		{name: "blocked prompt", reply: geminifake.Reply{BlockReason: "SAFETY"}, want: executor.SafetyBlocked},
		{name: "a safety stop", reply: geminifake.Reply{FinishReason: "SAFETY"}, want: executor.SafetyBlocked},
		{name: "rate limited", reply: geminifake.Reply{Status: http.StatusTooManyRequests, RetryAfter: "3"}, want: executor.RateLimited},
		{name: "overloaded", reply: geminifake.Reply{Status: http.StatusServiceUnavailable}, want: executor.ProviderUnavailable},
		{name: "cut mid-stream", reply: geminifake.Reply{Text: "one two three four five six seven eight", ChunkWords: 1, CutBody: true}, want: executor.ProviderError},
		{name: "max tokens", reply: geminifake.Reply{Text: "The dress is", FinishReason: "MAX_TOKENS"}, check: func(t *testing.T, out *executor.Output) {
			if out.Data["truncated"] != true || out.Data["text"] != "The dress is" {
				t.Errorf("data %v", out.Data)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, func(context.Context, geminifake.Request) geminifake.Reply { return tt.reply })
			ex := s.executor(t, func(set *gemini.Settings) { set.Stream = true })
			out, _, _, err := hostedtest.Exec(t, ex, "llm_interaction", "chat", map[string]any{"prompt": "describe"}, nil)
			if tt.check != nil {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, out)
				return
			}
			if !executor.Is(err, tt.want) {
				t.Errorf("got %v, want %s", err, tt.want)
			}
		})
	}
}
