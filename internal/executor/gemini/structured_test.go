package gemini_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/computeserver/compute/internal/executor/gemini/geminifake"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// TestStructuredChat: a response_schema asks for JSON
// (responseMimeType) following it (responseJsonSchema), and the task's
// model is the one in the path.
func TestStructuredChat(t *testing.T) {
	t.Parallel()
	s := newService(t, func(context.Context, geminifake.Request) geminifake.Reply {
		return geminifake.Reply{Text: `{"colour":"blue"}`}
	})
	schema := map[string]any{"type": "object", "properties": map[string]any{"colour": map[string]any{"type": "string"}}}
	out, _, err := run(t, s.executor(t, nil), "llm_interaction", "chat", map[string]any{"prompt": "colour?", "model": "gemini-2.5-pro", "response_schema": schema}, nil)
	if err != nil || out.Data["text"] != `{"colour":"blue"}` {
		t.Fatalf("%v, %v", out, err)
	}
	r := s.fake.Requests()[0]
	var body struct{ GenerationConfig map[string]any }
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	got, _ := body.GenerationConfig["responseJsonSchema"].(map[string]any)
	if r.Model != "gemini-2.5-pro" || body.GenerationConfig["responseMimeType"] != "application/json" || got["type"] != "object" {
		t.Errorf("request %s to %s", r.Body, r.Model)
	}
}

// TestEditWithReferences: the reference images follow the image to edit
// as inlineData parts of the same turn.
func TestEditWithReferences(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	person, dress := fakekit.PNG(20, 10, "person"), fakekit.PNG(12, 12, "dress")
	open := func(_ context.Context, url string) ([]byte, error) {
		if url == "p.png" {
			return person, nil
		}
		return dress, nil
	}
	_, _, err := run(t, s.executor(t, nil), "editing", "edit_image", map[string]any{
		"prompt": "put the dress on the person", "image_url": "p.png", "reference_image_urls": []string{"d.png"},
	}, open)
	if err != nil {
		t.Fatal(err)
	}
	r := s.fake.Requests()[0]
	if len(r.Images) != 2 || !bytes.Equal(r.Images[0], person) || !bytes.Equal(r.Images[1], dress) {
		t.Errorf("%d images", len(r.Images))
	}
}
