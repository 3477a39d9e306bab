package mock

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/task"
)

// OpChat is the chat operation (llm_interaction): the mock answers text,
// or JSON following the task's response_schema, word by word.
const OpChat = "chat"

// AnswerPrefix starts a chat prompt whose rest is the mock's answer,
// verbatim: "mock-answer:not json" answers "not json", so tests can make
// an answer that breaks its schema.
const AnswerPrefix = "mock-answer:"

// chatRequest is what the mock reads of a chat job's fields.
type chatRequest struct {
	Prompt   string `json:"prompt"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Model          string         `json:"model"`
	ResponseSchema map[string]any `json:"response_schema"`
	MaxTokens      int            `json:"max_tokens"`
}

// chat answers a chat job: the answer is "mock answer: " and the last
// user turn, or a JSON instance of the response schema (Example), or the
// text after AnswerPrefix; progress climbs word by word, as a streamed
// answer's does. max_tokens cuts the answer at that many words, marked
// truncated.
func (e *Executor) chat(ctx context.Context, job *executor.Job, r executor.Reporter) (*executor.Output, error) {
	var req chatRequest
	if err := json.Unmarshal(job.Fields, &req); err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "mock: reading fields: %w", err)
	}
	last := req.Prompt
	if last == "" {
		for _, m := range req.Messages {
			if m.Role == "user" {
				last = m.Content
			}
		}
	}
	if strings.TrimSpace(last) == "" {
		return nil, executor.Errorf(executor.InvalidInput, "mock: a chat needs a prompt or a user message")
	}
	if err := scriptedFailure(last); err != nil {
		return nil, err
	}
	answer := "mock answer: " + last
	switch rest, ok := strings.CutPrefix(last, AnswerPrefix); {
	case ok:
		answer = rest
	case req.ResponseSchema != nil:
		raw, err := json.Marshal(Example(req.ResponseSchema))
		if err != nil {
			return nil, fmt.Errorf("mock: encoding the example: %w", err)
		}
		answer = string(raw)
	}
	words := strings.SplitAfter(answer, " ")
	finish := "stop"
	if req.MaxTokens > 0 && len(words) > req.MaxTokens {
		words, finish = words[:req.MaxTokens], "length"
	}
	var text strings.Builder
	for i, w := range words {
		if err := e.sleep(ctx); err != nil {
			return nil, err
		}
		text.WriteString(w)
		if err := r.Progress(ctx, 10+80*float64(i+1)/float64(len(words)), fmt.Sprintf("streaming (%d chunks)", i+1)); err != nil {
			return nil, err
		}
	}
	model := req.Model
	if model == "" {
		model = "mock"
	}
	n := len(strings.Fields(last))
	return &executor.Output{Data: map[string]any{
		"text": text.String(), "finish_reason": finish, "truncated": finish == "length", "model": model,
		"usage": map[string]any{"prompt_tokens": n, "completion_tokens": len(words), "total_tokens": n + len(words)},
	}, Usage: task.Usage{InputTokens: int64(n), OutputTokens: int64(len(words))}}, nil
}

// Example returns a JSON value that follows the JSON Schema s, built
// deterministically: a const, default, first example or first enum value
// when the schema has one; else by type, objects with every property,
// arrays with minItems items (at least one), strings of minLength,
// numbers at their minimum (or 0), booleans false.
func Example(s map[string]any) any {
	for _, k := range []string{"const", "default"} {
		if v, ok := s[k]; ok {
			return v
		}
	}
	for _, k := range []string{"examples", "enum"} {
		if l, ok := s[k].([]any); ok && len(l) > 0 {
			return l[0]
		}
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if l, ok := s[k].([]any); ok && len(l) > 0 {
			if sub, ok := l[0].(map[string]any); ok {
				return Example(sub)
			}
		}
	}
	typ, _ := s["type"].(string)
	if l, ok := s["type"].([]any); ok && len(l) > 0 {
		typ, _ = l[0].(string)
	}
	switch typ {
	case "object", "":
		props, _ := s["properties"].(map[string]any)
		if typ == "" && props == nil {
			return nil
		}
		out := map[string]any{}
		names := make([]string, 0, len(props))
		for n := range props {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			sub, _ := props[n].(map[string]any)
			out[n] = Example(sub)
		}
		return out
	case "array":
		item, _ := s["items"].(map[string]any)
		n := 1
		if m, ok := s["minItems"].(float64); ok && int(m) > n {
			n = int(m)
		}
		out := make([]any, n)
		for i := range out {
			out[i] = Example(item)
		}
		return out
	case "string":
		v := "mock"
		if m, ok := s["minLength"].(float64); ok && int(m) > len(v) {
			v += strings.Repeat("k", int(m)-len(v))
		}
		return v
	case "integer", "number":
		if m, ok := s["minimum"].(float64); ok {
			return m
		}
		if m, ok := s["exclusiveMinimum"].(float64); ok {
			return m + 1
		}
		return 0
	case "boolean":
		return false
	}
	return nil
}
