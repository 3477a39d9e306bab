package geminifake_test

import (
	"context"
	"net/http"
	"testing"

	"go.uber.org/goleak"

	"github.com/computeserver/compute/internal/executor/gemini/geminifake"
	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func serve(t *testing.T, reply geminifake.Reply) *geminifake.Server {
	t.Helper()
	s := geminifake.Serve(geminifake.Config{Keys: []string{"k1"}, Tokens: []string{"t1"}, Reply: func(context.Context, geminifake.Request) geminifake.Reply { return reply }})
	t.Cleanup(s.Close)
	return s
}

const body = `{"contents":[{"role":"user","parts":[{"text":"a dress"},{"inline_data":{"mime_type":"image/png","data":"iVBORw0KGgo="}}]}],"generationConfig":{"responseModalities":["TEXT","IMAGE"]}}`

// TestRoutesAndAuth: §4.2 Endpoints — the Gemini API with x-goog-api-key
// (or ?key=), Vertex with a bearer token; both answer the same shape.
func TestRoutesAndAuth(t *testing.T) {
	t.Parallel()
	s := serve(t, geminifake.Reply{})
	api := s.URL + "/v1beta/models/gemini-2.5-flash-image:generateContent"
	vertex := s.URL + "/v1/projects/p/locations/global/publishers/google/models/gemini-2.5-flash-image:generateContent"
	for _, tc := range []struct {
		url    string
		header []string
		code   int
		status string
	}{
		{api, nil, http.StatusForbidden, "PERMISSION_DENIED"},
		{api, []string{"X-Goog-Api-Key", "k2"}, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{api, []string{"X-Goog-Api-Key", "k1"}, http.StatusOK, ""},
		{api + "?key=k1", nil, http.StatusOK, ""},
		{vertex, []string{"X-Goog-Api-Key", "k1"}, http.StatusUnauthorized, "UNAUTHENTICATED"},
		{vertex, []string{"Authorization", "Bearer t1"}, http.StatusOK, ""},
		{s.URL + "/v1beta/models/m:countTokens", []string{"X-Goog-Api-Key", "k1"}, http.StatusNotFound, "NOT_FOUND"},
	} {
		c := fakekit.Do(t, http.MethodPost, tc.url, body, tc.header...)
		if c.Code != tc.code {
			t.Errorf("%s %v: %d %s", tc.url, tc.header, c.Code, c.Body)
			continue
		}
		if tc.status != "" {
			if e, _ := c.JSON(t)["error"].(map[string]any); e["status"] != tc.status || e["code"] != float64(tc.code) {
				t.Errorf("%s %v: %s", tc.url, tc.header, c.Body)
			}
			continue
		}
		cand := c.JSON(t)["candidates"].([]any)[0].(map[string]any)
		parts := cand["content"].(map[string]any)["parts"].([]any)
		if cand["finishReason"] != "STOP" || len(parts) != 2 || parts[1].(map[string]any)["inlineData"] == nil {
			t.Errorf("%s: %s", tc.url, c.Body)
		}
	}
	reqs := s.Requests()
	last := reqs[len(reqs)-1] // the Vertex success (the 404 is not recorded)
	if !last.Vertex || last.Project != "p" || last.Prompt != "a dress" || len(last.Images) != 1 || !last.WantsImage() {
		t.Errorf("recorded %+v", last)
	}
}

// TestBlockAndErrors: §4.2/§4.3 — a safety block is a 200 without
// candidates; a 429 carries Retry-After and a RetryInfo detail.
func TestBlockAndErrors(t *testing.T) {
	t.Parallel()
	s := serve(t, geminifake.Reply{BlockReason: "SAFETY"})
	c := fakekit.Do(t, http.MethodPost, s.URL+"/v1beta/models/m:generateContent", body, "X-Goog-Api-Key", "k1")
	v := c.JSON(t)
	if c.Code != http.StatusOK || v["candidates"] != nil || v["promptFeedback"].(map[string]any)["blockReason"] != "SAFETY" {
		t.Errorf("block: %d %s", c.Code, c.Body)
	}
	s = serve(t, geminifake.Reply{Status: http.StatusTooManyRequests, RetryAfter: "4", RetryDelay: "4s"})
	c = fakekit.Do(t, http.MethodPost, s.URL+"/v1beta/models/m:generateContent", body, "X-Goog-Api-Key", "k1")
	e := c.JSON(t)["error"].(map[string]any)
	d := e["details"].([]any)[0].(map[string]any)
	if c.Code != 429 || c.Header.Get("Retry-After") != "4" || e["status"] != "RESOURCE_EXHAUSTED" || d["retryDelay"] != "4s" {
		t.Errorf("429: %v %s", c.Header, c.Body)
	}
}
