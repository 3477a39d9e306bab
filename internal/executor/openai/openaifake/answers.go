package openaifake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// urlTTL is how long an image URL answers (§4.1: dall-e URLs "are only
// valid for 60 minutes").
const urlTTL = 60 * time.Minute

// text is the chat answer of a reply.
func text(req Request, reply Reply) string {
	if reply.Text != "" {
		return reply.Text
	}
	return "echo: " + req.Prompt
}

// finishReason is the reply's finish_reason (default stop).
func finishReason(reply Reply) string {
	if reply.FinishReason != "" {
		return reply.FinishReason
	}
	return "stop"
}

// usageOf counts tokens as words, which is all a fake can do.
func usageOf(req Request, answer string) map[string]int {
	p, c := len(strings.Fields(req.Prompt)), len(strings.Fields(answer))
	return map[string]int{"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
}

// completion is a whole chat.completion (§4.1 Response).
func completion(req Request, reply Reply) map[string]any {
	answer := text(req, reply)
	msg := map[string]any{"role": "assistant", "content": answer, "refusal": nil}
	if reply.Refusal != "" {
		msg["content"], msg["refusal"] = nil, reply.Refusal
	}
	return map[string]any{
		"id": "chatcmpl-fake", "object": "chat.completion", "created": time.Now().Unix(), "model": req.Model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finishReason(reply), "logprobs": nil}},
		"usage":   usageOf(req, answer),
	}
}

// chunk is one chat.completion.chunk (§4.1 Streaming) with choices as
// given ([] or nil for the usage-only chunk) and, when the client asked
// include_usage, usage (null on every chunk but that one).
func chunk(req Request, choices any, usage any) map[string]any {
	c := map[string]any{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": req.Model, "choices": choices}
	if req.IncludeUsage {
		c["usage"] = usage
	}
	return c
}

// stream writes a streamed answer (§4.1 Streaming): a role chunk, the
// text in ChunkSize pieces, a chunk with finish_reason, with
// include_usage a chunk whose choices are [] (or null) and that carries
// usage, then data: [DONE]. CutAfter drops the connection mid-way (§4.3).
func (f *Fake) stream(w http.ResponseWriter, req Request, reply Reply) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(v any) bool {
		raw, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", raw); err != nil {
			return false // the client went away
		}
		if flusher != nil {
			flusher.Flush()
		}
		return true
	}
	delta := func(d map[string]any, finish any) []any {
		return []any{map[string]any{"index": 0, "delta": d, "finish_reason": finish, "logprobs": nil}}
	}
	if !send(chunk(req, delta(map[string]any{"role": "assistant", "content": ""}, nil), nil)) {
		return
	}
	answer := text(req, reply)
	size := reply.ChunkSize
	if size <= 0 {
		size = 4
	}
	if reply.Refusal != "" {
		answer = ""
		if !send(chunk(req, delta(map[string]any{"refusal": reply.Refusal}, nil), nil)) {
			return
		}
	}
	for i, n := 0, 0; i < len(answer); i, n = i+size, n+1 {
		if reply.CutAfter > 0 && n == reply.CutAfter {
			fakekit.Drop(w) // §4.3 mid-stream disconnect
			return
		}
		if !send(chunk(req, delta(map[string]any{"content": answer[i:min(i+size, len(answer))]}, nil), nil)) {
			return
		}
	}
	if reply.StreamError != nil {
		send(map[string]any{"error": reply.StreamError})
		return
	}
	if !send(chunk(req, delta(map[string]any{}, finishReason(reply)), nil)) {
		return
	}
	if req.IncludeUsage {
		var choices any = []any{}
		if reply.UsageChoices == "null" {
			choices = nil
		}
		if !send(chunk(req, choices, usageOf(req, answer))) {
			return
		}
	}
	if !reply.NoDone {
		_, _ = fmt.Fprint(w, "data: [DONE]\n\n")
	}
}

// images answers an image request (§4.1 Images): one image, as b64_json
// or, when asked (reply.ImageURL or response_format url), as a URL
// served by the fake for 60 minutes.
func (f *Fake) images(w http.ResponseWriter, r *http.Request, req Request, reply Reply) {
	var body struct {
		ResponseFormat string `json:"response_format"`
		Size           string `json:"size"`
	}
	_ = json.Unmarshal(req.Body, &body) // an odd body answers the defaults
	img := reply.Image
	if img == nil {
		wd, ht := size(body.Size)
		img = fakekit.PNG(wd, ht, req.Prompt+string(req.Image))
	}
	item := map[string]any{"revised_prompt": req.Prompt}
	if reply.ImageURL || body.ResponseFormat == "url" {
		item["url"] = fakekit.BaseURL(r) + f.files.Put(img, "image/png", ".png", urlTTL)
	} else {
		item["b64_json"] = base64.StdEncoding.EncodeToString(img)
	}
	fakekit.WriteJSON(w, http.StatusOK, map[string]any{
		"created": time.Now().Unix(), "data": []any{item},
		"usage": map[string]any{"input_tokens": len(strings.Fields(req.Prompt)), "output_tokens": 1056, "total_tokens": 1056 + len(strings.Fields(req.Prompt))},
	})
}

// size reads "WxH", rendering at most 64 pixels a side (the fake's images
// only need to be real PNGs); default 32×32.
func size(s string) (int, int) {
	ws, hs, ok := strings.Cut(s, "x")
	w, err1 := strconv.Atoi(ws)
	h, err2 := strconv.Atoi(hs)
	if !ok || err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 32, 32
	}
	scale := max(w, h)
	return max(1, w*64/scale), max(1, h*64/scale)
}
