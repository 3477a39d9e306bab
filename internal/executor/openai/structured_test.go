package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
	"github.com/computeserver/compute/internal/executor/openai/openaifake"
)

// TestStructuredChat: a response_schema goes as response_format
// json_schema (§4.1), and the task's model replaces the configured one.
func TestStructuredChat(t *testing.T) {
	t.Parallel()
	s := newService(t, func(context.Context, openaifake.Request) openaifake.Reply {
		return openaifake.Reply{Text: `{"colour":"blue"}`}
	})
	schema := map[string]any{"type": "object", "properties": map[string]any{"colour": map[string]any{"type": "string"}}, "required": []any{"colour"}}
	out, _, _, err := run(t, s.executor(t, nil), "llm_interaction", "chat", map[string]any{
		"prompt": "Which colour is the dress?", "model": "gpt-4.1", "response_schema": schema,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data["text"] != `{"colour":"blue"}` {
		t.Errorf("text %v", out.Data["text"])
	}
	r := s.fake.Requests()[0]
	var body struct {
		Model          string
		ResponseFormat struct {
			Type       string
			JSONSchema struct {
				Name   string
				Schema map[string]any
			} `json:"json_schema"`
		} `json:"response_format"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Model != "gpt-4.1" || body.ResponseFormat.Type != "json_schema" || body.ResponseFormat.JSONSchema.Name != "response" ||
		body.ResponseFormat.JSONSchema.Schema["type"] != "object" {
		t.Errorf("request %s", r.Body)
	}
	// A schema that is not an object schema is refused before sending.
	_, _, _, err = run(t, s.executor(t, nil), "llm_interaction", "chat", map[string]any{"prompt": "x", "response_schema": map[string]any{"type": "array"}}, nil)
	if !executor.Is(err, executor.InvalidInput) || len(s.fake.Requests()) != 1 {
		t.Errorf("an array schema: %v", err)
	}
}

// TestEditWithReferences: reference images go with the image to edit as
// image[] parts, in order.
func TestEditWithReferences(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	person, dress, belt := fakekit.PNG(20, 10, "person"), fakekit.PNG(12, 12, "dress"), fakekit.PNG(8, 4, "belt")
	inputs := map[string][]byte{"p.png": person, "d.png": dress, "b.png": belt}
	open := func(_ context.Context, url string) ([]byte, error) {
		if b, ok := inputs[url]; ok {
			return b, nil
		}
		return nil, errors.New("no such input")
	}
	_, _, _, err := run(t, s.executor(t, nil), "editing", "edit_image", map[string]any{
		"prompt": "dress the person in the dress and the belt", "image_url": "p.png", "reference_image_urls": []string{"d.png", "b.png"},
	}, open)
	if err != nil {
		t.Fatal(err)
	}
	r := s.fake.Requests()[0]
	if len(r.Images) != 3 || !bytes.Equal(r.Images[0], person) || !bytes.Equal(r.Images[1], dress) || !bytes.Equal(r.Images[2], belt) {
		t.Errorf("%d images sent", len(r.Images))
	}
	_, _, _, err = run(t, s.executor(t, nil), "editing", "edit_image", map[string]any{
		"prompt": "x", "image_url": "p.png", "reference_image_urls": []string{"gone.png"},
	}, open)
	if !executor.Is(err, executor.InvalidInput) {
		t.Errorf("an unreadable reference: %v", err)
	}
}
