package openai_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/executor/openai"
	"github.com/computeserver/compute/internal/executor/openai/openaifake"
	"github.com/computeserver/compute/internal/task"
)

const key = "sk-test-key"

// service is an openai fake behind a hostedtest.Front (which can take it
// down), answering each harness job as its behaviour asks.
type service struct {
	fake  *openaifake.Fake
	front *hostedtest.Front
	jobs  hostedtest.Behaviours
	// reply, when set, answers requests that are not harness jobs.
	reply func(ctx context.Context, r openaifake.Request) openaifake.Reply
}

func newService(t *testing.T, reply func(ctx context.Context, r openaifake.Request) openaifake.Reply) *service {
	t.Helper()
	s := &service{reply: reply}
	s.fake = openaifake.New(openaifake.Config{Keys: []string{key}, Reply: s.answer})
	s.front = hostedtest.Serve(t, s.fake, &s.jobs, func(*http.Request) (string, bool) { return "", false }, nil)
	return s
}

// answer plays a harness job's behaviour (§4.1 errors, §4.3 failure
// modes); a held job waits for its release or for the client to drop
// the connection.
func (s *service) answer(ctx context.Context, r openaifake.Request) openaifake.Reply {
	b := s.jobs.Of(r.Body)
	if b == (executortest.Behaviour{}) && s.reply != nil {
		return s.reply(ctx, r)
	}
	fail, ok := hostedtest.Play(ctx, b)
	if !ok {
		return openaifake.Reply{}
	}
	switch fail {
	case executor.ProviderUnavailable:
		return openaifake.Reply{Status: http.StatusServiceUnavailable, Message: "The engine is currently overloaded, please try again later"}
	case executor.ProviderError:
		return openaifake.Reply{Status: http.StatusInternalServerError, Message: "The server had an error while processing your request."}
	case executor.RateLimited:
		return openaifake.Reply{Status: http.StatusTooManyRequests, ErrorCode: "rate_limit_exceeded", RetryAfter: "7", Message: "Rate limit reached for images per minute"}
	case executor.InvalidInput:
		return openaifake.Reply{Status: http.StatusBadRequest, Message: "Invalid value for 'size'."}
	case executor.SafetyBlocked:
		return openaifake.Reply{Status: http.StatusBadRequest, ErrorCode: "content_policy_violation", Message: "Your request was rejected as a result of our safety system."}
	}
	return openaifake.Reply{}
}

func (s *service) executor(t *testing.T, mod func(*openai.Settings)) *openai.Executor {
	t.Helper()
	set := openai.Settings{BaseURL: s.front.URL + "/v1", Key: key}
	set.Model = "gpt-4.1-mini"
	set.Models.Models = map[string]string{"generation": "gpt-image-1"}
	if mod != nil {
		mod(&set)
	}
	ex, err := openai.New("openai-test", set, nil)
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
var run = hostedtest.Exec

// TestChatStreams: a streamed chat (§4.1 Streaming) is read whole through
// lines far over bufio.Scanner's 64 KiB (§4.3), with the usage-only chunk
// whose choices are [] (OpenAI) or null (vLLM); the text, the usage and
// progress come back, and the request asked for the stream with usage.
func TestChatStreams(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("lorem ipsum dolor sit amet ", 12<<10) // 324 KiB
	tests := []struct {
		name   string
		stream bool
		reply  openaifake.Reply
		want   string
	}{
		{"usage chunk with choices []", true, openaifake.Reply{Text: "A linen dress, pale blue."}, "A linen dress, pale blue."},
		{"usage chunk with choices null", true, openaifake.Reply{Text: "Hello there.", UsageChoices: "null"}, "Hello there."},
		{"lines over 64 KiB", true, openaifake.Reply{Text: long, ChunkSize: 100 << 10}, long},
		{"no [DONE] after the finish_reason", true, openaifake.Reply{Text: "short", NoDone: true}, "short"},
		{"not streamed", false, openaifake.Reply{Text: "whole"}, "whole"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, func(context.Context, openaifake.Request) openaifake.Reply { return tt.reply })
			stream := tt.stream
			ex := s.executor(t, func(set *openai.Settings) { set.Stream = &stream })
			out, _, p, err := run(t, ex, "llm_interaction", "chat", map[string]any{
				"system": "Answer briefly.", "prompt": "Describe the dress.", "max_tokens": 64, "temperature": 0.2,
			}, nil)
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if got, _ := out.Data["text"].(string); got != tt.want {
				t.Errorf("text is %d bytes (%.40q…), want %d bytes", len(got), got, len(tt.want))
			}
			if u, ok := out.Data["usage"].(map[string]any); !ok || u["total_tokens"].(int) <= 0 {
				t.Errorf("usage %v, want token counts", out.Data["usage"])
			}
			// The fake counts words: the prompt's, the answer's.
			if want := (task.Usage{InputTokens: 3, OutputTokens: int64(len(strings.Fields(tt.want)))}); out.Usage != want {
				t.Errorf("Output.Usage %+v, want %+v", out.Usage, want)
			}
			if out.Data["truncated"] != false || out.Data["finish_reason"] != "stop" {
				t.Errorf("finish %v, truncated %v", out.Data["finish_reason"], out.Data["truncated"])
			}
			if pct := p.All(); len(pct) == 0 || pct[len(pct)-1] != 100 {
				t.Errorf("progress %v, want it to end at 100", pct)
			}
			reqs := s.fake.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Stream != tt.stream || r.IncludeUsage != tt.stream || r.Model != "gpt-4.1-mini" || r.Header.Get("Authorization") != "Bearer "+key {
				t.Errorf("request stream %v usage %v model %q auth %q", r.Stream, r.IncludeUsage, r.Model, r.Header.Get("Authorization"))
			}
			var body struct {
				Messages []struct {
					Role, Content string
				}
				MaxTokens   int     `json:"max_tokens"`
				Temperature float64 `json:"temperature"`
			}
			if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Messages) != 2 || body.Messages[0].Role != "system" ||
				body.Messages[1].Content != "Describe the dress." || body.MaxTokens != 64 || body.Temperature != 0.2 {
				t.Errorf("request body %s", r.Body)
			}
		})
	}
}

// TestChatFailures: each way a chat ends badly comes back with its
// category (§4.1 finish_reason and errors, §4.3 disconnect).
func TestChatFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reply openaifake.Reply
		want  executor.Category
	}{
		{"disconnect mid-stream", openaifake.Reply{Text: "a long answer that breaks off", CutAfter: 2}, executor.ProviderError},
		{"error inside the stream", openaifake.Reply{Text: "partial", StreamError: map[string]any{"type": "server_error", "message": "upstream died"}}, executor.ProviderError},
		{"content filter", openaifake.Reply{Text: "partial", FinishReason: "content_filter"}, executor.SafetyBlocked},
		{"refusal", openaifake.Reply{Refusal: "I can't help with that."}, executor.SafetyBlocked},
		{"429 rate limit", openaifake.Reply{Status: 429, RetryAfter: "7", Message: "Rate limit reached"}, executor.RateLimited},
		{"429 quota", openaifake.Reply{Status: 429, ErrorType: "insufficient_quota", ErrorCode: "insufficient_quota", Message: "You exceeded your current quota"}, executor.ProviderUnavailable},
		{"503 overloaded", openaifake.Reply{Status: 503, Message: "The engine is currently overloaded"}, executor.ProviderUnavailable},
		{"400 context too long", openaifake.Reply{Status: 400, ErrorCode: "context_length_exceeded", Message: "maximum context length is 8192 tokens"}, executor.InvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, func(context.Context, openaifake.Request) openaifake.Reply { return tt.reply })
			_, _, _, err := run(t, s.executor(t, nil), "llm_interaction", "chat", map[string]any{"prompt": "hi"}, nil)
			if err == nil {
				t.Fatal("the job succeeded")
			}
			if got := executor.CategoryOf(err); got != tt.want {
				t.Fatalf("category %s, want %s (%v)", got, tt.want, err)
			}
			if task.IsPermanent(err) == tt.want.Retryable() {
				t.Errorf("permanent %v for %s", task.IsPermanent(err), tt.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the error %q leaks the key", err)
			}
			var ra *task.RetryAfterError
			if tt.want == executor.RateLimited && (!errors.As(err, &ra) || ra.After != 7*time.Second) {
				t.Errorf("%v: want a retry after 7s", err)
			}
		})
	}
}

// TestChatTruncated: an answer cut at max_tokens (finish_reason length) is
// kept, marked truncated.
func TestChatTruncated(t *testing.T) {
	t.Parallel()
	s := newService(t, func(context.Context, openaifake.Request) openaifake.Reply {
		return openaifake.Reply{Text: "The dress is made of", FinishReason: "length"}
	})
	out, _, _, err := run(t, s.executor(t, nil), "llm_interaction", "chat", map[string]any{"prompt": "describe", "max_tokens": 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.Data["text"] != "The dress is made of" || out.Data["truncated"] != true || out.Data["finish_reason"] != "length" {
		t.Errorf("data %v", out.Data)
	}
}

// TestWrongKey: the fake refuses a wrong key with 401 (§4.1); the error
// does not repeat the key.
func TestWrongKey(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	ex := s.executor(t, func(set *openai.Settings) { set.Key = "sk-wrong" })
	_, _, _, err := run(t, ex, "llm_interaction", "chat", map[string]any{"prompt": "hi"}, nil)
	if err == nil || !strings.Contains(err.Error(), "401") || strings.Contains(err.Error(), "sk-wrong") {
		t.Errorf("a wrong key: %v", err)
	}
}

// bigPNG is a real PNG header and image followed by megabytes of data, so
// its base64 makes a multi-megabyte answer (§4.3).
func bigPNG() []byte {
	img := fakekit.PNG(16, 16, "big")
	return append(img, bytes.Repeat([]byte("0123456789abcdef"), 3<<16)...) // +3 MiB
}

// TestImages: an image answered as b64_json (multi-megabyte) or by URL
// (downloaded at once, §4.1 "valid for 60 minutes") is stored as it was
// sent; the size comes from width and height.
func TestImages(t *testing.T) {
	t.Parallel()
	big := bigPNG()
	for _, byURL := range []bool{false, true} {
		s := newService(t, func(context.Context, openaifake.Request) openaifake.Reply {
			return openaifake.Reply{Image: big, ImageURL: byURL}
		})
		out, st, _, err := run(t, s.executor(t, nil), "generation", "text_to_image", map[string]any{"prompt": "a dress", "width": 1024, "height": 1536}, nil)
		if err != nil {
			t.Fatalf("by URL %v: %v", byURL, err)
		}
		data, ok := st.File("output-0.png")
		if !ok || !bytes.Equal(data, big) || len(out.Artifacts) != 1 || out.Artifacts[0].Size != int64(len(big)) {
			t.Errorf("by URL %v: stored %d bytes (ok %v), want %d; artifacts %+v", byURL, len(data), ok, len(big), out.Artifacts)
		}
		var body struct{ Model, Size, Prompt string }
		r := s.fake.Requests()[0]
		if err := json.Unmarshal(r.Body, &body); err != nil || r.Path != "/v1/images/generations" || body.Model != "gpt-image-1" || body.Size != "1024x1536" {
			t.Errorf("request %s %s", r.Path, r.Body)
		}
		if out.Data["revised_prompt"] != "a dress" {
			t.Errorf("data %v", out.Data)
		}
		// gpt-image-1's usage: input_tokens (the fake counts the prompt's
		// words) and output_tokens.
		if want := (task.Usage{InputTokens: 2, OutputTokens: 1056}); out.Usage != want {
			t.Errorf("Output.Usage %+v, want %+v", out.Usage, want)
		}
	}
}

// TestEditImage: edit_image sends the input image (read through
// OpenInput) and mask to /images/edits as multipart (§4.1 Editing) and
// stores the answer; an input that is not an image is invalid input,
// refused before any call.
func TestEditImage(t *testing.T) {
	t.Parallel()
	s := newService(t, nil)
	in, mask := fakekit.PNG(20, 10, "in"), fakekit.PNG(20, 10, "mask")
	open := func(_ context.Context, url string) ([]byte, error) {
		switch url {
		case "tasks/1/in.png":
			return in, nil
		case "tasks/1/mask.png":
			return mask, nil
		case "tasks/1/notes.txt":
			return []byte("not an image"), nil
		}
		return nil, errors.New("no such input")
	}
	out, st, _, err := run(t, s.executor(t, nil), "editing", "edit_image", map[string]any{
		"prompt": "make it red", "image_url": "tasks/1/in.png", "mask_url": "tasks/1/mask.png", "size": "1024x1024",
	}, open)
	if err != nil {
		t.Fatal(err)
	}
	r := s.fake.Requests()[0]
	if r.Path != "/v1/images/edits" || !bytes.Equal(r.Image, in) || !bytes.Equal(r.Mask, mask) || r.Prompt != "make it red" || r.Model != "gpt-4.1-mini" {
		t.Errorf("edit request %s image %d bytes mask %d bytes, prompt %q model %q", r.Path, len(r.Image), len(r.Mask), r.Prompt, r.Model)
	}
	if _, ok := st.File("output-0.png"); !ok || len(out.Artifacts) != 1 || out.Artifacts[0].Width != 64 {
		t.Errorf("artifacts %+v", out.Artifacts)
	}
	for name, fields := range map[string]map[string]any{
		"not an image":   {"prompt": "x", "image_url": "tasks/1/notes.txt"},
		"unreadable":     {"prompt": "x", "image_url": "tasks/1/gone.png"},
		"no input image": {"prompt": "x"},
		"no prompt":      {"image_url": "tasks/1/in.png"},
	} {
		if _, _, _, err := run(t, s.executor(t, nil), "editing", "edit_image", fields, open); !executor.Is(err, executor.InvalidInput) {
			t.Errorf("%s: %v, want invalid input", name, err)
		}
	}
	if n := len(s.fake.Requests()); n != 1 {
		t.Errorf("%d requests, want only the first edit's", n)
	}
}

// TestCancelDropsConnection: cancelling a running call drops its
// connection (§0 "drop connection"): the fake sees its client gone.
func TestCancelDropsConnection(t *testing.T) {
	t.Parallel()
	running, gone := make(chan struct{}), make(chan struct{})
	s := newService(t, func(ctx context.Context, _ openaifake.Request) openaifake.Reply {
		close(running)
		<-ctx.Done() // the server ends a request's context when its client goes
		close(gone)
		return openaifake.Reply{}
	})
	ex := s.executor(t, nil)
	j := (&hostedtest.Store{}).Prepare(&executor.Job{TaskID: uuid.New(), Type: "llm_interaction", Operation: "chat", Fields: json.RawMessage(`{"prompt":"hi"}`)})
	h, err := ex.Start(t.Context(), j)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ex.Wait(t.Context(), j, h, hostedtest.Discard())
		done <- err
	}()
	<-running
	if err := ex.Cancel(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !executor.Is(err, executor.Cancelled) {
			t.Errorf("Wait after Cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Cancel")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the fake never saw the connection dropped")
	}
}
