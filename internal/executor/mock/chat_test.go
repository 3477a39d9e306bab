package mock_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/mock"
)

type pcts []float64

func (p *pcts) Progress(_ context.Context, pct float64, _ string) error {
	*p = append(*p, pct)
	return nil
}

func chat(t *testing.T, fields map[string]any) (*executor.Output, pcts, error) {
	t.Helper()
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	var p pcts
	job := &executor.Job{TaskID: uuid.New(), Type: "llm_interaction", Operation: mock.OpChat, Fields: raw,
		SaveHandle: func(context.Context, executor.Handle) error { return nil }}
	out, err := executor.Execute(t.Context(), &mock.Executor{}, job, &p)
	return out, p, err
}

func TestChat(t *testing.T) {
	t.Parallel()
	out, p, err := chat(t, map[string]any{"prompt": "describe the linen dress"})
	if err != nil || out.Data["text"] != "mock answer: describe the linen dress" || out.Data["truncated"] != false || len(out.Artifacts) != 0 {
		t.Fatalf("%v, %v", out, err)
	}
	// A progress report per word, as a stream's chunks.
	if len(p) != 6 || p[len(p)-1] != 90 {
		t.Errorf("progress %v", p)
	}
	out, _, err = chat(t, map[string]any{"messages": []map[string]any{{"role": "user", "content": "one two three four"}}, "max_tokens": 2})
	if err != nil || out.Data["text"] != "mock answer: " || out.Data["truncated"] != true || out.Data["finish_reason"] != "length" {
		t.Errorf("truncated: %v, %v", out, err)
	}
	out, _, err = chat(t, map[string]any{"prompt": mock.AnswerPrefix + "not json"})
	if err != nil || out.Data["text"] != "not json" {
		t.Errorf("verbatim: %v, %v", out, err)
	}
	if _, _, err = chat(t, map[string]any{"prompt": mock.FailPrefix + "safety_blocked hi"}); !executor.Is(err, executor.SafetyBlocked) {
		t.Errorf("scripted failure: %v", err)
	}
	if _, _, err = chat(t, map[string]any{}); !executor.Is(err, executor.InvalidInput) {
		t.Errorf("no prompt: %v", err)
	}
}

func TestChatFollowsTheSchema(t *testing.T) {
	t.Parallel()
	schema := map[string]any{"type": "object", "properties": map[string]any{
		"colour":   map[string]any{"type": "string", "enum": []any{"blue", "red"}},
		"sizes":    map[string]any{"type": "array", "items": map[string]any{"type": "integer", "minimum": 34.0}, "minItems": 2.0},
		"in_stock": map[string]any{"type": "boolean"},
		"name":     map[string]any{"type": "string", "minLength": 6.0},
	}}
	out, _, err := chat(t, map[string]any{"prompt": "describe", "response_schema": schema})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(out.Data["text"].(string)), &got); err != nil {
		t.Fatalf("answer %q is not JSON: %v", out.Data["text"], err)
	}
	want := map[string]any{"colour": "blue", "sizes": []any{34.0, 34.0}, "in_stock": false, "name": "mockkk"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("answer %v, want %v", got, want)
	}
}
