package gemini_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/gemini"
	"github.com/computeserver/compute/internal/executor/gemini/geminifake"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/task"
)

const (
	key   = "AIza-test-key"
	token = "ya29.test-token"
)

// service is a gemini fake behind a hostedtest.Front (which can take it
// down), answering each harness job as its behaviour asks.
type service struct {
	fake  *geminifake.Fake
	front *hostedtest.Front
	jobs  hostedtest.Behaviours
	reply func(ctx context.Context, r geminifake.Request) geminifake.Reply
}

func newService(t *testing.T, reply func(ctx context.Context, r geminifake.Request) geminifake.Reply) *service {
	t.Helper()
	s := &service{reply: reply}
	s.fake = geminifake.New(geminifake.Config{Keys: []string{key}, Tokens: []string{token}, Reply: s.answer})
	s.front = hostedtest.Serve(t, s.fake, &s.jobs, func(*http.Request) (string, bool) { return "", false }, nil)
	return s
}

// answer plays a harness job's behaviour (§4.2 errors, §4.3 failure
// modes); a held job waits for its release or for the client to drop the
// connection.
func (s *service) answer(ctx context.Context, r geminifake.Request) geminifake.Reply {
	marker, _ := json.Marshal(map[string]string{"prompt": r.Prompt})
	b := s.jobs.Of(marker)
	if b == (executortest.Behaviour{}) && s.reply != nil {
		return s.reply(ctx, r)
	}
	fail, ok := hostedtest.Play(ctx, b)
	if !ok {
		return geminifake.Reply{}
	}
	switch fail {
	case executor.ProviderUnavailable:
		return geminifake.Reply{Status: http.StatusServiceUnavailable, Message: "The model is overloaded. Please try again later."}
	case executor.ProviderError:
		return geminifake.Reply{TextOnly: true, Text: "I cannot draw that, but here is a description."}
	case executor.RateLimited:
		return geminifake.Reply{Status: http.StatusTooManyRequests, RetryDelay: "13s", Message: "Resource has been exhausted (e.g. check quota)."}
	case executor.InvalidInput:
		return geminifake.Reply{Status: http.StatusBadRequest, Message: "* GenerateContentRequest.generation_config.image_config.aspect_ratio: invalid"}
	case executor.SafetyBlocked:
		return geminifake.Reply{BlockReason: "PROHIBITED_CONTENT"}
	}
	return geminifake.Reply{}
}

func (s *service) executor(t *testing.T, mod func(*gemini.Settings)) *gemini.Executor {
	t.Helper()
	set := gemini.Settings{BaseURL: s.front.URL, Key: key}
	set.Model = "gemini-2.5-flash"
	set.Models.Models = map[string]string{"generation": "gemini-2.5-flash-image", "editing": "gemini-2.5-flash-image"}
	if mod != nil {
		mod(&set)
	}
	ex, err := gemini.New("gemini-test", set, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestHarness(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	hostedtest.SyncHarness(t, &s.jobs, s.front, func(t *testing.T) executor.Executor { return s.executor(t, nil) })
}

// run executes a job on ex (hostedtest.Exec).
func run(t *testing.T, ex executor.Executor, typ, op string, fields map[string]any, input func(context.Context, string) ([]byte, error)) (*executor.Output, *hostedtest.Store, error) {
	t.Helper()
	out, st, _, err := hostedtest.Exec(t, ex, typ, op, fields, input)
	return out, st, err
}

// TestChat: a chat joins the answer's text parts, skipping thoughts, and
// returns usage; system and the conversation go as systemInstruction and
// contents (§4.2 Request); MAX_TOKENS keeps the truncated text, marked.
func TestChat(t *testing.T) {
	t.Parallel()
	var reply geminifake.Reply
	s := newService(t, func(context.Context, geminifake.Request) geminifake.Reply { return reply })
	ex := s.executor(t, nil)
	fields := map[string]any{
		"system": "Answer briefly.", "prompt": "And the colour?", "max_tokens": 32, "temperature": 0.4,
		"messages": []map[string]string{{"role": "user", "content": "Describe the dress."}, {"role": "assistant", "content": "A linen dress."}},
	}
	reply = geminifake.Reply{Text: "Pale blue.", Thoughts: true}
	out, _, err := run(t, ex, "llm_interaction", "chat", fields, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data["text"] != "Pale blue." || out.Data["truncated"] != false || len(out.Artifacts) != 0 {
		t.Errorf("data %v, artifacts %v", out.Data, out.Artifacts)
	}
	if u, ok := out.Data["usage"].(map[string]any); !ok || u["completion_tokens"] != 2 {
		t.Errorf("usage %v", out.Data["usage"])
	}
	if u := out.Usage; u.InputTokens <= 0 || u.OutputTokens != 2 || u.ProviderSeconds != 0 {
		t.Errorf("Output.Usage %+v, want the prompt's tokens and 2 answer tokens (usageMetadata)", u)
	}
	r := s.fake.Requests()[0]
	var body struct {
		Contents []struct {
			Role  string
			Parts []struct{ Text string }
		}
		GenerationConfig map[string]any
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Contents) != 3 || body.Contents[1].Role != "model" ||
		r.System != "Answer briefly." || r.Prompt != "And the colour?" || r.Model != "gemini-2.5-flash" ||
		body.GenerationConfig["maxOutputTokens"] != 32.0 || body.GenerationConfig["responseModalities"] != nil {
		t.Errorf("request %s", r.Body)
	}
	if r.Header.Get("X-Goog-Api-Key") != key || r.Vertex {
		t.Errorf("request headers %v", r.Header)
	}

	reply = geminifake.Reply{Text: "The dress is", FinishReason: "MAX_TOKENS"}
	out, _, err = run(t, ex, "llm_interaction", "chat", map[string]any{"prompt": "describe"}, nil)
	if err != nil || out.Data["text"] != "The dress is" || out.Data["truncated"] != true || out.Data["finish_reason"] != "MAX_TOKENS" {
		t.Errorf("MAX_TOKENS: %v, %v", out, err)
	}
}

// TestFailures: each way generateContent fails comes back with its
// category (§4.2, §4.3).
func TestFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		op    string
		reply geminifake.Reply
		want  executor.Category
		after time.Duration
	}{
		{"safety block, no candidates", "text_to_image", geminifake.Reply{BlockReason: "SAFETY"}, executor.SafetyBlocked, 0},
		{"blocked chat", "chat", geminifake.Reply{BlockReason: "OTHER"}, executor.SafetyBlocked, 0},
		{"text where an image was asked", "text_to_image", geminifake.Reply{TextOnly: true}, executor.ProviderError, 0},
		{"image safety finish", "text_to_image", geminifake.Reply{FinishReason: "IMAGE_SAFETY"}, executor.SafetyBlocked, 0},
		{"no image finish", "text_to_image", geminifake.Reply{FinishReason: "NO_IMAGE"}, executor.ProviderError, 0},
		{"max tokens on an image", "text_to_image", geminifake.Reply{FinishReason: "MAX_TOKENS"}, executor.ProviderError, 0},
		{"recitation on a chat", "chat", geminifake.Reply{FinishReason: "RECITATION"}, executor.SafetyBlocked, 0},
		{"unsupported language", "chat", geminifake.Reply{FinishReason: "LANGUAGE"}, executor.InvalidInput, 0},
		{"429 with Retry-After", "chat", geminifake.Reply{Status: 429, RetryAfter: "9"}, executor.RateLimited, 9 * time.Second},
		{"429 with RetryInfo", "chat", geminifake.Reply{Status: 429, RetryDelay: "21s"}, executor.RateLimited, 21 * time.Second},
		{"503 overloaded", "chat", geminifake.Reply{Status: 503, Message: "The model is overloaded."}, executor.ProviderUnavailable, 0},
		{"500 internal", "chat", geminifake.Reply{Status: 500}, executor.ProviderError, 0},
		{"400 invalid argument", "chat", geminifake.Reply{Status: 400, Message: "Invalid JSON payload"}, executor.InvalidInput, 0},
		{"cut mid-body", "chat", geminifake.Reply{CutBody: true}, executor.ProviderUnavailable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, func(context.Context, geminifake.Request) geminifake.Reply { return tt.reply })
			_, _, err := run(t, s.executor(t, nil), "generation", tt.op, map[string]any{"prompt": "a dress"}, nil)
			if err == nil {
				t.Fatal("the job succeeded")
			}
			if got := executor.CategoryOf(err); got != tt.want {
				t.Fatalf("category %s, want %s (%v)", got, tt.want, err)
			}
			if task.IsPermanent(err) == tt.want.Retryable() {
				t.Errorf("permanent %v for %s", task.IsPermanent(err), tt.want)
			}
			var ra *task.RetryAfterError
			if tt.after > 0 && (!errors.As(err, &ra) || ra.After != tt.after) {
				t.Errorf("%v: want a retry after %v", err, tt.after)
			}
		})
	}
}

// TestImages: the last non-thought inlineData part is the output, even
// multi-megabyte (§4.3); the aspect ratio comes from width and height.
func TestImages(t *testing.T) {
	t.Parallel()
	big := append(fakekit.PNG(16, 16, "big"), bytes.Repeat([]byte("0123456789abcdef"), 3<<16)...)
	s := newService(t, func(context.Context, geminifake.Request) geminifake.Reply {
		return geminifake.Reply{Image: big, Thoughts: true}
	})
	out, st, err := run(t, s.executor(t, nil), "generation", "text_to_image", map[string]any{"prompt": "a dress", "width": 1024, "height": 1536, "image_size": "2K"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, ok := st.File("output-0.png")
	if !ok || !bytes.Equal(data, big) || len(out.Artifacts) != 1 {
		t.Fatalf("stored %d bytes (ok %v), want the answer's %d; artifacts %+v", len(data), ok, len(big), out.Artifacts)
	}
	var body struct {
		GenerationConfig struct {
			ResponseModalities []string
			ImageConfig        map[string]string
		}
	}
	r := s.fake.Requests()[0]
	if err := json.Unmarshal(r.Body, &body); err != nil || !r.WantsImage() || r.Model != "gemini-2.5-flash-image" ||
		body.GenerationConfig.ImageConfig["aspectRatio"] != "2:3" || body.GenerationConfig.ImageConfig["imageSize"] != "2K" {
		t.Errorf("request %s", r.Body)
	}
}

// TestEditImage: the input image goes inline with the instruction (§4.2
// "text + image editing in one shape"); the output is stored.
func TestEditImage(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	in := fakekit.PNG(20, 10, "in")
	open := func(_ context.Context, url string) ([]byte, error) {
		if url == "tasks/1/in.png" {
			return in, nil
		}
		return nil, errors.New("no such input")
	}
	out, _, err := run(t, s.executor(t, nil), "editing", "edit_image", map[string]any{"prompt": "Replace the background with a beach", "image_url": "tasks/1/in.png"}, open)
	if err != nil {
		t.Fatal(err)
	}
	r := s.fake.Requests()[0]
	if len(r.Images) != 1 || !bytes.Equal(r.Images[0], in) || r.Prompt != "Replace the background with a beach" || !r.WantsImage() {
		t.Errorf("request prompt %q, %d images", r.Prompt, len(r.Images))
	}
	if len(out.Artifacts) != 1 || out.Artifacts[0].Width != 48 {
		t.Errorf("artifacts %+v", out.Artifacts)
	}
}

// TestVertex: with a project, the call goes to Vertex's path with the
// bearer token (§4.2 Endpoints), read from token_file at each call.
func TestVertex(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ex := s.executor(t, func(set *gemini.Settings) {
		set.Key, set.Project, set.Location, set.TokenFile = "", "my-proj", "europe-west4", file
	})
	out, _, err := run(t, ex, "llm_interaction", "chat", map[string]any{"prompt": "hi"}, nil)
	if err != nil || out.Data["text"] != "echo: hi" {
		t.Fatalf("%v, %v", out, err)
	}
	r := s.fake.Requests()[0]
	if !r.Vertex || r.Project != "my-proj" || r.Location != "europe-west4" || r.Header.Get("Authorization") != "Bearer "+token || r.Header.Get("X-Goog-Api-Key") != "" {
		t.Errorf("request %s %v", r.Path, r.Header)
	}
	if err := os.WriteFile(file, []byte("ya29.expired"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, ex, "llm_interaction", "chat", map[string]any{"prompt": "hi"}, nil); err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "ya29") {
		t.Errorf("an expired token: %v", err)
	}
}

func TestAspectRatio(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		w, h int
		want string
	}{{1024, 1024, "1:1"}, {1920, 1080, "16:9"}, {1080, 1920, "9:16"}, {1024, 768, "4:3"}, {2560, 1080, "21:9"}, {0, 5, ""}} {
		if got := gemini.AspectRatio(tc.w, tc.h); got != tc.want {
			t.Errorf("AspectRatio(%d, %d) = %q, want %q", tc.w, tc.h, got, tc.want)
		}
	}
}
