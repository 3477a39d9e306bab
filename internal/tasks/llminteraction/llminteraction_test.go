package llminteraction_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/gemini/geminifake"
	"github.com/computeserver/compute/internal/executor/openai/openaifake"
	"github.com/computeserver/compute/internal/executors"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/task"
	"github.com/computeserver/compute/internal/tasks/llminteraction"
	"github.com/computeserver/compute/internal/testutil/fakeruntime"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

func ptr[T any](v T) *T { return &v }

// garment is the schema of the tests' structured answers.
var garment = map[string]any{"type": "object", "required": []any{"colour", "sleeves"}, "properties": map[string]any{
	"colour":  map[string]any{"type": "string"},
	"sleeves": map[string]any{"type": "string", "enum": []any{"short", "long", "none"}},
}}

func TestDeclare(t *testing.T) {
	t.Parallel()
	reg := registry.New()
	if err := reg.Register(llminteraction.Type(nil, nil)); err != nil {
		t.Fatal(err)
	}
	def, _ := reg.Lookup(llminteraction.Name)
	if def == nil || def.Table != "llm_interaction_tasks" || def.DefaultProvider != "openai" {
		t.Fatalf("definition %+v", def)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		f         llminteraction.Fields
		wantField string
	}{
		{name: "a prompt", f: llminteraction.Fields{Prompt: ptr("hi")}},
		{name: "a user turn", f: llminteraction.Fields{Messages: []llminteraction.Message{{Role: "user", Content: "hi"}}}},
		{name: "nothing to answer", f: llminteraction.Fields{System: ptr("be brief")}, wantField: "prompt"},
		{name: "only an assistant turn", f: llminteraction.Fields{Messages: []llminteraction.Message{{Role: "assistant", Content: "hi"}}}, wantField: "prompt"},
		{name: "a tool role", f: llminteraction.Fields{Prompt: ptr("hi"), Messages: []llminteraction.Message{{Role: "tool", Content: "x"}}}, wantField: "messages[0].role"},
		{name: "temperature", f: llminteraction.Fields{Prompt: ptr("hi"), Temperature: ptr(2.5)}, wantField: "temperature"},
		{name: "max_tokens", f: llminteraction.Fields{Prompt: ptr("hi"), MaxTokens: ptr(0)}, wantField: "max_tokens"},
		{name: "empty model", f: llminteraction.Fields{Prompt: ptr("hi"), Model: ptr("")}, wantField: "model"},
		{name: "image url", f: llminteraction.Fields{Prompt: ptr("hi"), ImageURL: ptr("file:///etc/passwd")}, wantField: "image_url"},
		{name: "an array schema", f: llminteraction.Fields{Prompt: ptr("hi"), ResponseSchema: map[string]any{"type": "array"}}, wantField: "response_schema"},
		{name: "a schema", f: llminteraction.Fields{Prompt: ptr("hi"), ResponseSchema: garment}},
	}
	for _, tt := range tests {
		err := tt.f.Validate()
		var fe *registry.FieldError
		switch {
		case tt.wantField == "" && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField):
			t.Errorf("%s: got %v, want a FieldError for %s", tt.name, err, tt.wantField)
		}
	}
}

func build(t *testing.T, name, kind string, settings map[string]any) *executor.Set {
	t.Helper()
	raw, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	set, err := executors.Build(map[string]executors.Entry{name: {Type: kind, Settings: raw}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func process(t *testing.T, set *executor.Set, provider string, f *llminteraction.Fields) (*task.Result, *fakeruntime.Runtime, error) {
	t.Helper()
	j, rt := fakeruntime.NewJob(t, llminteraction.Name, provider, f)
	res, err := llminteraction.Type(&artifact.Fetcher{Store: rt.Store}, set).Processor.Process(context.Background(), j)
	return res, rt, err
}

// TestOpenAI: a conversation with a schema on an OpenAI-compatible server
// (the fake): the request carries the conversation, the task's model and
// response_format; the streamed answer drives progress; its text and
// parsed JSON are the outputs.
func TestOpenAI(t *testing.T) {
	t.Parallel()
	fake := openaifake.Serve(openaifake.Config{Reply: func(context.Context, openaifake.Request) openaifake.Reply {
		return openaifake.Reply{Text: `{"colour": "ecru", "sleeves": "short"}`, ChunkSize: 3}
	}})
	t.Cleanup(fake.Close)
	set := build(t, "gpt", "openai", map[string]any{"base_url": fake.URL, "key": "sk-test", "model": "gpt-4.1-mini"})
	f := &llminteraction.Fields{
		Messages:       []llminteraction.Message{{Role: "user", Content: "Describe the dress."}, {Role: "assistant", Content: "A linen dress."}},
		Prompt:         ptr("Its colour and sleeves?"),
		System:         ptr("You describe garments."),
		Model:          ptr("gpt-4.1"),
		Temperature:    ptr(0.2),
		MaxTokens:      ptr(300),
		ResponseSchema: garment,
	}
	res, rt, err := process(t, set, "gpt", f)
	if err != nil {
		t.Fatal(err)
	}
	out := res.Data.(llminteraction.Output)
	if out.JSON["colour"] != "ecru" || out.Text != `{"colour": "ecru", "sleeves": "short"}` || out.Truncated || out.FinishReason != "stop" || out.Usage == nil {
		t.Errorf("output %+v", out)
	}
	if f.ResponseText == nil || *f.ResponseText != out.Text || f.ResponseJSON["sleeves"] != "short" || *f.FinishReason != "stop" {
		t.Errorf("saved fields %+v", f)
	}
	var body struct {
		Model          string
		Messages       []map[string]any
		Temperature    float64
		MaxTokens      int `json:"max_tokens"`
		Stream         bool
		ResponseFormat struct {
			Type string
		} `json:"response_format"`
	}
	if err := json.Unmarshal(fake.Requests()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Model != "gpt-4.1" || len(body.Messages) != 4 || body.Messages[0]["role"] != "system" || body.Temperature != 0.2 ||
		body.MaxTokens != 300 || !body.Stream || body.ResponseFormat.Type != "json_schema" {
		t.Errorf("request %s", fake.Requests()[0].Body)
	}
	streamed := false
	for _, c := range rt.ProgressCalls() {
		streamed = streamed || strings.HasPrefix(c.Stage, "streaming")
	}
	if calls := rt.ProgressCalls(); !streamed || calls[len(calls)-1].Percent != 100 {
		t.Errorf("progress %v, want streaming reports and 100", calls)
	}
	if err := rt.CheckProgress(); err != nil {
		t.Error(err)
	}
}

// TestGemini: the same on generateContent, streamed (the fake): the
// schema goes as responseJsonSchema, an input image as inlineData.
func TestGemini(t *testing.T) {
	t.Parallel()
	fake := geminifake.Serve(geminifake.Config{Reply: func(context.Context, geminifake.Request) geminifake.Reply {
		return geminifake.Reply{Text: "```json\n{\"colour\":\"navy\",\"sleeves\":\"long\"}\n```"}
	}})
	t.Cleanup(fake.Close)
	set := build(t, "gem", "gemini", map[string]any{"base_url": fake.URL, "key": "k", "model": "gemini-2.5-flash", "stream": true})
	j, rt := fakeruntime.NewJob(t, llminteraction.Name, "gem", &llminteraction.Fields{})
	img, err := rt.Store.Put(context.Background(), artifact.TaskKey("a1b2c3", "dress.png"), "image/png", pngBytes(t))
	if err != nil {
		t.Fatal(err)
	}
	*j.Fields = llminteraction.Fields{Prompt: ptr("Colour and sleeves of this dress?"), ImageURL: ptr(artifact.PathPrefix + img.Key), ResponseSchema: garment}
	res, err := llminteraction.Type(&artifact.Fetcher{Store: rt.Store}, set).Processor.Process(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if out := res.Data.(llminteraction.Output); out.JSON["colour"] != "navy" || out.FinishReason != "STOP" {
		t.Errorf("output %+v", out)
	}
	r := fake.Requests()[0]
	var body struct{ GenerationConfig map[string]any }
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if !r.Stream || len(r.Images) != 1 || !bytes.Equal(r.Images[0], pngBytes(t)) || body.GenerationConfig["responseMimeType"] != "application/json" {
		t.Errorf("request: %d images, %s", len(r.Images), r.Body)
	}
}

// TestInvalidOutput: an answer that is not JSON, or breaks the schema,
// fails with category invalid_output, not retried, saying why; one cut at
// max_tokens says so.
func TestInvalidOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text, finish, want string
	}{
		{"not JSON", "The dress is ecru with short sleeves.", "", "it is not JSON"},
		{"a wrong enum", `{"colour":"ecru","sleeves":"three-quarter"}`, "", `$.sleeves: is "three-quarter", want one of ["short","long","none"]`},
		{"a missing property", `{"colour":"ecru"}`, "", `lacks the required property "sleeves"`},
		{"cut at max_tokens", `{"colour":"ec`, "length", "the answer was cut at max_tokens"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake := openaifake.Serve(openaifake.Config{Reply: func(context.Context, openaifake.Request) openaifake.Reply {
				return openaifake.Reply{Text: tt.text, FinishReason: tt.finish}
			}})
			t.Cleanup(fake.Close)
			set := build(t, "gpt", "openai", map[string]any{"base_url": fake.URL, "key": "sk-test", "model": "gpt-4.1-mini"})
			f := &llminteraction.Fields{Prompt: ptr("Colour and sleeves?"), ResponseSchema: garment}
			_, _, err := process(t, set, "gpt", f)
			cat, retry, ok := task.ClassifiedAs(err)
			if !ok || cat != llminteraction.CategoryInvalidOutput || retry {
				t.Errorf("category %q retryable %v (%v), want invalid_output, not retried", cat, retry, err)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
			if f.ResponseText != nil {
				t.Error("an invalid answer was saved")
			}
		})
	}
}

// TestWithoutSchema: without a schema the answer is text, as it came.
func TestWithoutSchema(t *testing.T) {
	t.Parallel()
	fake := openaifake.Serve(openaifake.Config{})
	t.Cleanup(fake.Close)
	set := build(t, "gpt", "openai", map[string]any{"base_url": fake.URL, "key": "sk-test", "model": "gpt-4.1-mini", "stream": false})
	res, _, err := process(t, set, "gpt", &llminteraction.Fields{Prompt: ptr("a tagline for a linen dress")})
	if err != nil {
		t.Fatal(err)
	}
	if out := res.Data.(llminteraction.Output); out.Text != "echo: a tagline for a linen dress" || out.JSON != nil || out.Model != "gpt-4.1-mini" {
		t.Errorf("output %+v", out)
	}
}

// TestCreateWithoutAProvider: the embedded default (no config file) has
// no executor for chats but the mock, which answers only tasks that name
// it: a task naming none is a 422 saying what to configure; one naming
// the mock runs; with an openai executor configured the same request is
// accepted.
func TestCreateWithoutAProvider(t *testing.T) {
	t.Parallel()
	const key = "llm-test-admin-key-0123456789abcdef"
	srv := testserver.Start(t, testserver.Config(t, "sqlite", key), app.Options{Workers: true}, nil)
	status, body := post(t, srv.Base, key, map[string]any{"task_type": "llm_interaction", "prompt": "hi"})
	if status != http.StatusUnprocessableEntity || !strings.Contains(body, "configure an executor of type openai or gemini (docs/executors.md)") ||
		!strings.Contains(body, "body.provider_type") {
		t.Errorf("without a provider: %d %s", status, body)
	}
	if status, body := post(t, srv.Base, key, map[string]any{"task_type": "llm_interaction", "prompt": "hi", "provider_type": "mock"}); status != http.StatusCreated {
		t.Errorf("naming the mock: %d %s", status, body)
	}

	fake := openaifake.Serve(openaifake.Config{})
	t.Cleanup(fake.Close)
	cfg := testserver.Config(t, "sqlite", key)
	cfg.File = "test.yaml"
	raw, _ := json.Marshal(map[string]any{"base_url": fake.URL, "key": "sk-test", "model": "gpt-4.1-mini"})
	cfg.Executors = map[string]config.ExecutorEntry{"gpt": {Type: "openai", Settings: raw}, "local": {Type: "local"}}
	srv = testserver.Start(t, cfg, app.Options{Workers: true}, nil)
	status, body = post(t, srv.Base, key, map[string]any{"task_type": "llm_interaction", "prompt": "hi"})
	if status != http.StatusCreated || !strings.Contains(body, `"provider_type":"gpt"`) {
		t.Errorf("with an openai executor: %d %s", status, body)
	}
}

func post(t *testing.T, base, key string, body map[string]any) (int, string) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/tasks/", bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestStreamedProgressEvents: through a real server, an answer that
// arrives word by word (a mock with a step delay, routed to the type by
// the config file, so no provider_type is needed) becomes progress
// events of the task between its executing and completed statuses, with
// the stage of the stream.
func TestStreamedProgressEvents(t *testing.T) {
	t.Parallel()
	const key = "llm-events-admin-key-0123456789abcdef"
	cfg := testserver.Config(t, "sqlite", key)
	cfg.File = "test.yaml"
	cfg.Executors = map[string]config.ExecutorEntry{"slow": {Type: "mock", Settings: json.RawMessage(`{"step_delay":"60ms"}`)}}
	cfg.Types = map[string]config.TypeEntry{"llm_interaction": {Executor: "slow"}}
	srv := testserver.Start(t, cfg, app.Options{Workers: true}, nil)
	status, body := post(t, srv.Base, key, map[string]any{"task_type": "llm_interaction",
		"prompt": "write twenty words about a linen summer dress for the spring catalogue of a small fashion label please"})
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal([]byte(body), &created); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.Base+"/api/v1/tasks/"+created.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The stream ends after the task's terminal event.
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	stream := string(raw)
	progress := strings.Count(stream, "event: llm_interaction_progress_update")
	if progress < 2 || !strings.Contains(stream, "streaming (") || !strings.Contains(stream, `"status":"completed"`) {
		t.Errorf("%d progress events in the stream, want several with the stream's stage, then completed:\n%s", progress, stream)
	}
}
