package openaifake_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
	"github.com/computeserver/compute/internal/executor/openai/openaifake"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func serve(t *testing.T, reply openaifake.Reply) *openaifake.Server {
	t.Helper()
	s := openaifake.Serve(openaifake.Config{Keys: []string{"sk-1"}, Reply: func(context.Context, openaifake.Request) openaifake.Reply { return reply }})
	t.Cleanup(s.Close)
	return s
}

// TestAuth: §4.1 Bearer key; a missing or wrong one is a 401 in OpenAI's
// error shape, and the request is still recorded.
func TestAuth(t *testing.T) {
	t.Parallel()
	s := serve(t, openaifake.Reply{})
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for _, auth := range []string{"", "Bearer sk-2"} {
		c := fakekit.Do(t, http.MethodPost, s.URL+"/chat/completions", body, "Authorization", auth)
		e, _ := c.JSON(t)["error"].(map[string]any)
		if c.Code != http.StatusUnauthorized || e["code"] != "invalid_api_key" || e["message"] == "" {
			t.Errorf("auth %q: %d %s", auth, c.Code, c.Body)
		}
	}
	c := fakekit.Do(t, http.MethodPost, s.URL+"/chat/completions", body, "Authorization", "Bearer sk-1")
	ch := c.JSON(t)["choices"].([]any)[0].(map[string]any)
	if c.Code != http.StatusOK || ch["message"].(map[string]any)["content"] != "echo: hi" || ch["finish_reason"] != "stop" {
		t.Errorf("a good key: %d %s", c.Code, c.Body)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests recorded, want 3", n)
	}
}

// TestStreamFraming: §4.1 Streaming — a role chunk, content chunks, a
// finish_reason chunk, the usage-only chunk with choices [] or null, then
// data: [DONE].
func TestStreamFraming(t *testing.T) {
	t.Parallel()
	for _, choices := range []string{"[]", "null"} {
		s := serve(t, openaifake.Reply{Text: "abcdefgh", ChunkSize: 3, UsageChoices: choices})
		c := fakekit.Do(t, http.MethodPost, s.URL+"/chat/completions",
			`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer sk-1")
		if c.Code != http.StatusOK || c.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("%d %v", c.Code, c.Header)
		}
		events := strings.Split(strings.TrimSuffix(string(c.Body), "\n\n"), "\n\n")
		if len(events) != 7 {
			t.Fatalf("%d events, want role + 3 content + finish + usage + DONE: %s", len(events), c.Body)
		}
		if !strings.Contains(events[0], `"role":"assistant"`) || !strings.Contains(events[1], `"content":"abc"`) ||
			!strings.Contains(events[3], `"content":"gh"`) || !strings.Contains(events[4], `"finish_reason":"stop"`) ||
			!strings.Contains(events[5], `"choices":`+choices) || !strings.Contains(events[5], `"total_tokens":2`) ||
			!strings.Contains(events[1], `"usage":null`) || events[6] != "data: [DONE]" {
			t.Errorf("choices %s: stream\n%s", choices, c.Body)
		}
	}
}

// TestErrors: §4.1 Errors — the error object with its type, and
// Retry-After on a 429 (§4.3).
func TestErrors(t *testing.T) {
	t.Parallel()
	s := serve(t, openaifake.Reply{Status: http.StatusTooManyRequests, RetryAfter: "3", Message: "slow down"})
	c := fakekit.Do(t, http.MethodPost, s.URL+"/images/generations", `{"model":"m","prompt":"p"}`, "Authorization", "Bearer sk-1")
	e, _ := c.JSON(t)["error"].(map[string]any)
	if c.Code != http.StatusTooManyRequests || c.Header.Get("Retry-After") != "3" || e["type"] != "rate_limit_error" || e["message"] != "slow down" {
		t.Errorf("%d %v %s", c.Code, c.Header, c.Body)
	}
	c = fakekit.Do(t, http.MethodPost, s.URL+"/nope", `{}`, "Authorization", "Bearer sk-1")
	if c.Code != http.StatusNotFound {
		t.Errorf("unknown route: %d", c.Code)
	}
}

// TestImageURL: an image answered by URL is served by the fake (§4.1,
// valid 60 minutes).
func TestImageURL(t *testing.T) {
	t.Parallel()
	s := serve(t, openaifake.Reply{ImageURL: true})
	c := fakekit.Do(t, http.MethodPost, s.URL+"/images/generations", `{"model":"m","prompt":"p","size":"1024x512"}`, "Authorization", "Bearer sk-1")
	url := c.JSON(t)["data"].([]any)[0].(map[string]any)["url"].(string)
	img := fakekit.Do(t, http.MethodGet, url, "")
	if img.Code != http.StatusOK || img.Header.Get("Content-Type") != "image/png" || string(img.Body[1:4]) != "PNG" {
		t.Errorf("GET %s: %d %v", url, img.Code, img.Header)
	}
}
