package llm_test

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/llm"
)

// events reads a stream and returns the events' data.
func events(t *testing.T, stream string) ([]string, error) {
	t.Helper()
	var got []string
	err := llm.ReadEvents(strings.NewReader(stream), func(d []byte) (bool, error) {
		got = append(got, string(d))
		return string(d) == "[DONE]", nil
	})
	return got, err
}

func TestReadEvents(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200<<10)
	tests := []struct {
		name, stream string
		want         []string
	}{
		{"OpenAI framing", "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\ndata: {\"after\":1}\n\n", []string{`{"a":1}`, `{"a":2}`, "[DONE]"}},
		{"CRLF, comments, event and id lines", ": ping\r\nevent: message\r\nid: 4\r\ndata:{\"a\":1}\r\n\r\n", []string{`{"a":1}`}},
		{"no blank lines between events", "data: {\"a\":1}\ndata: {\"a\":2}\ndata: [DONE]\n", []string{`{"a":1}`, `{"a":2}`, "[DONE]"}},
		{"multi-line data joined", "data: {\"a\":\ndata: 1}\n\n", []string{"{\"a\":\n1}"}},
		{"a line over 64 KiB", "data: \"" + long + "\"\n\n", []string{`"` + long + `"`}},
		{"last event without a line end", "data: {\"a\":1}", []string{`{"a":1}`}},
	}
	for _, tt := range tests {
		got, err := events(t, tt.stream)
		if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("%s: %d events %.80q, %v; want %.80q", tt.name, len(got), got, err, tt.want)
		}
	}
	// A stream that breaks off is an error, not an end.
	err := llm.ReadEvents(io.MultiReader(strings.NewReader("data: {\"a\":1}\n\ndata: {\"b\""), errReader{}), func([]byte) (bool, error) { return false, nil })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a broken stream: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		op, fields string
		ok         bool
	}{
		{"chat", `{"prompt":"hi"}`, true},
		{"chat", `{"messages":[{"role":"user","content":"hi"}]}`, true},
		{"chat", `{"messages":[{"role":"tool","content":"hi"}]}`, false},
		{"chat", `{}`, false},
		{"text_to_image", `{"prompt":"a dress","width":1024,"height":768}`, true},
		{"text_to_image", `{"width":1024}`, false},
		{"edit_image", `{"prompt":"red","image_url":"tasks/1/a.png"}`, true},
		{"edit_image", `{"prompt":"red","reference_image_url":"tasks/1/a.png"}`, true},
		{"edit_image", `{"prompt":"red"}`, false},
		{"adjust_image", `{"prompt":"red"}`, false},
		{"chat", `{"prompt":"hi","max_tokens":-1}`, false},
		{"chat", `{"prompt":`, false},
	}
	for _, tt := range tests {
		f, err := llm.Decode(&executor.Job{Operation: tt.op, Fields: json.RawMessage(tt.fields)})
		if (err == nil) != tt.ok || (err != nil && !executor.Is(err, executor.InvalidInput)) {
			t.Errorf("%s %s: %v, want ok %v", tt.op, tt.fields, err, tt.ok)
		}
		if err == nil && tt.op == "text_to_image" && f.SizeText() != "1024x768" {
			t.Errorf("size %q", f.SizeText())
		}
	}
}
