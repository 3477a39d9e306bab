// Package geminifake is a fake of Google's generateContent for tests, on
// both of its front doors (reference/executors.md §4.2): the Gemini API
// (POST /v1beta/models/{model}:generateContent, x-goog-api-key; streamed
// as Server-Sent Events at :streamGenerateContent?alt=sse) and
// Vertex AI (POST /v1/projects/{p}/locations/{l}/publishers/google/
// models/{model}:generateContent, a bearer token). It answers text, and an
// image when the request's responseModalities include IMAGE, and reproduces
// the failure modes of §4.3 through Config.Reply: errors as
// google.rpc.Status (429 RESOURCE_EXHAUSTED with Retry-After or a
// RetryInfo, 503 UNAVAILABLE "model is overloaded"), a safety block (200
// without candidates, promptFeedback.blockReason), a text answer where an
// image was asked, a finishReason other than STOP, interim thought parts,
// multi-megabyte inline images, an answer cut off mid-body, and an answer
// held until the client drops the connection.
package geminifake

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// Request is a recorded generateContent call.
type Request struct {
	// Path is the URL path; Model the model in it; Vertex whether it came
	// through the Vertex route, with its Project and Location; Stream
	// whether it asked :streamGenerateContent (with alt=sse).
	Path, Model       string
	Vertex, Stream    bool
	Project, Location string
	Header            http.Header
	Body              json.RawMessage
	// Prompt is the text of the last user turn; System the
	// systemInstruction's text; Images the decoded inlineData of the last
	// user turn.
	Prompt, System string
	Images         [][]byte
	// Modalities are generationConfig.responseModalities.
	Modalities []string
	// At is when it arrived.
	At time.Time
}

// WantsImage reports whether the request asked for an image.
func (r Request) WantsImage() bool { return slices.Contains(r.Modalities, "IMAGE") }

// Reply is how the fake answers one request. The zero value answers
// success: "echo: " + prompt, and an image when one was asked.
type Reply struct {
	// Status, when not 0 or 200, answers an error as google.rpc.Status
	// {"error": {code, message, status, details}} (§4.2 Errors) with
	// Message and RPCStatus (default the usual one for Status:
	// RESOURCE_EXHAUSTED, UNAVAILABLE, INVALID_ARGUMENT, INTERNAL …).
	Status             int
	Message, RPCStatus string
	// RetryAfter is sent as the Retry-After header; RetryDelay ("30s")
	// as a google.rpc.RetryInfo detail ⚠.
	RetryAfter, RetryDelay string
	// BlockReason answers 200 with no candidates and
	// promptFeedback.blockReason (§4.2, §4.3 safety block).
	BlockReason string
	// Text is the answer's text (default "echo: " + prompt).
	Text string
	// TextOnly answers only text even when an image was asked (§4.3).
	TextOnly bool
	// FinishReason is the candidate's finishReason (default STOP).
	FinishReason string
	// Thoughts puts interim parts marked thought: true, with an image of
	// their own, before the answer's parts (§4.2 ⚠ Gemini 3).
	Thoughts bool
	// Image is the image answered (default a small PNG from the prompt);
	// a multi-megabyte one exercises large bodies (§4.3).
	Image []byte
	// CutBody drops the connection half-way through the body (a stream
	// after half of its chunks).
	CutBody bool
	// ChunkWords is how many words of the text each streamed chunk
	// carries (default 3).
	ChunkWords int
}

// Config sets the fake's behaviour.
type Config struct {
	// Keys are the accepted Gemini API keys; Tokens the accepted Vertex
	// bearer tokens. Empty accepts any non-empty one.
	Keys, Tokens []string
	// Reply decides each request's answer, in the request's handler with
	// its context: it may block until the client drops the connection.
	// Nil answers the zero Reply.
	Reply func(ctx context.Context, r Request) Reply
}

// Fake is generateContent as an http.Handler.
type Fake struct {
	cfg      Config
	requests fakekit.Journal[Request]
}

// New returns a fake with cfg's behaviour.
func New(cfg Config) *Fake { return &Fake{cfg: cfg} }

// Requests returns the requests received, oldest first.
func (f *Fake) Requests() []Request { return f.requests.All() }

// Server is a Fake on a loopback port.
type Server struct {
	*Fake
	// URL is the base URL (the host, without a version path).
	URL    string
	served fakekit.Served
}

// Serve starts a fake on a loopback port.
func Serve(cfg Config) *Server {
	f := New(cfg)
	s := fakekit.Serve(f)
	return &Server{Fake: f, URL: s.URL, served: s}
}

// Close drops open connections and stops the server.
func (s *Server) Close() { s.served.Shutdown() }

var (
	apiRoute    = regexp.MustCompile(`^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)$`)
	vertexRoute = regexp.MustCompile(`^/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+):(generateContent|streamGenerateContent)$`)
)

// rpcStatus is the google.rpc.Status code name usual for an HTTP status
// (§4.2 Errors).
func rpcStatus(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

// writeError answers a google.rpc.Status (§4.2 Errors).
func writeError(w http.ResponseWriter, code int, status, msg string, details ...any) {
	if status == "" {
		status = rpcStatus(code)
	}
	if msg == "" {
		msg = http.StatusText(code)
	}
	e := map[string]any{"code": code, "message": msg, "status": status}
	if len(details) > 0 {
		e["details"] = details
	}
	fakekit.WriteJSON(w, code, map[string]any{"error": e})
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := Request{Path: r.URL.Path, Header: r.Header.Clone(), At: time.Now()}
	if m := apiRoute.FindStringSubmatch(r.URL.Path); m != nil {
		req.Model, req.Stream = m[1], m[2] == "streamGenerateContent"
	} else if m := vertexRoute.FindStringSubmatch(r.URL.Path); m != nil {
		req.Vertex, req.Project, req.Location, req.Model, req.Stream = true, m[1], m[2], m[3], m[4] == "streamGenerateContent"
	} else {
		writeError(w, http.StatusNotFound, "", "Requested entity was not found.")
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "", "method not allowed")
		return
	}
	raw, err := io.ReadAll(r.Body)
	req.Body = raw
	problem := "reading the body failed"
	if err == nil {
		problem = req.parse()
	}
	f.requests.Add(req)
	if ok, code, msg := f.authorized(r, req.Vertex); !ok {
		writeError(w, code, "", msg)
		return
	}
	if problem != "" {
		writeError(w, http.StatusBadRequest, "", problem)
		return
	}
	reply, ok := fakekit.Ask(w, r, f.cfg.Reply, req, func(r Reply) string { return r.RetryAfter })
	if !ok {
		return // the client went away (a cancel drops the connection, §0)
	}
	if reply.Status != 0 && reply.Status != http.StatusOK {
		var details []any
		if reply.RetryDelay != "" {
			details = append(details, map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": reply.RetryDelay})
		}
		writeError(w, reply.Status, reply.RPCStatus, reply.Message, details...)
		return
	}
	if req.Stream {
		if r.URL.Query().Get("alt") != "sse" {
			// Without alt=sse the stream is one JSON array (§4.2 ⚠): not
			// what a client reading events expects.
			writeError(w, http.StatusBadRequest, "", "this fake streams only with alt=sse")
			return
		}
		stream(w, req, reply)
		return
	}
	body, err := json.Marshal(answer(req, reply))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if reply.CutBody {
		cut(w, body[:len(body)/2])
		return
	}
	_, _ = w.Write(body)
}

// authorized checks the key (Gemini API) or the bearer token (Vertex)
// (§4.2 Endpoints). A missing API key is 403 PERMISSION_DENIED, a wrong
// one 400 INVALID_ARGUMENT "API key not valid" ⚠; a Vertex call without a
// valid token is 401 UNAUTHENTICATED.
func (f *Fake) authorized(r *http.Request, vertex bool) (bool, int, string) {
	if vertex {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" || (len(f.cfg.Tokens) > 0 && !slices.Contains(f.cfg.Tokens, tok)) {
			return false, http.StatusUnauthorized, "Request had invalid authentication credentials. Expected OAuth 2 access token."
		}
		return true, 0, ""
	}
	key := r.Header.Get("X-Goog-Api-Key")
	if key == "" {
		key = r.URL.Query().Get("key")
	}
	switch {
	case key == "":
		return false, http.StatusForbidden, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API."
	case len(f.cfg.Keys) > 0 && !slices.Contains(f.cfg.Keys, key):
		return false, http.StatusBadRequest, "API key not valid. Please pass a valid API key."
	}
	return true, 0, ""
}

// parse reads the request body (§4.2 Request; inline_data and mime_type
// accepted too, as proto-JSON does) and returns what is wrong with it, in
// Google's words, or "".
func (req *Request) parse() string {
	type blob struct {
		MimeType string `json:"mimeType"`
		Data     string `json:"data"`
	}
	type part struct {
		Text       string `json:"text"`
		InlineData *blob  `json:"inlineData"`
		InlineSnk  *struct {
			MimeType string `json:"mime_type"`
			Data     string `json:"data"`
		} `json:"inline_data"`
	}
	type content struct {
		Role  string `json:"role"`
		Parts []part `json:"parts"`
	}
	var b struct {
		Contents          []content `json:"contents"`
		SystemInstruction *content  `json:"systemInstruction"`
		GenerationConfig  struct {
			ResponseModalities []string `json:"responseModalities"`
		} `json:"generationConfig"`
	}
	if err := json.Unmarshal(req.Body, &b); err != nil {
		return "Invalid JSON payload received. " + err.Error()
	}
	if len(b.Contents) == 0 {
		return "* GenerateContentRequest.contents: contents is not specified"
	}
	req.Modalities = b.GenerationConfig.ResponseModalities
	if b.SystemInstruction != nil {
		for _, p := range b.SystemInstruction.Parts {
			req.System += p.Text
		}
	}
	last := b.Contents[len(b.Contents)-1]
	var texts []string
	for _, p := range last.Parts {
		if p.Text != "" {
			texts = append(texts, p.Text)
		}
		data := ""
		switch {
		case p.InlineData != nil:
			data = p.InlineData.Data
		case p.InlineSnk != nil:
			data = p.InlineSnk.Data
		default:
			continue
		}
		img, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			return "Invalid value at 'contents.parts.inline_data.data' (TYPE_BYTES), Base64 decoding failed"
		}
		req.Images = append(req.Images, img)
	}
	req.Prompt = strings.Join(texts, "\n")
	return ""
}

// answer builds the GenerateContentResponse (§4.2 Response).
func answer(req Request, reply Reply) map[string]any {
	usage := map[string]any{"promptTokenCount": len(strings.Fields(req.Prompt)), "candidatesTokenCount": 0, "totalTokenCount": len(strings.Fields(req.Prompt))}
	out := map[string]any{"usageMetadata": usage, "modelVersion": req.Model, "responseId": "fake-" + fmt.Sprint(req.At.UnixNano())}
	if reply.BlockReason != "" {
		out["promptFeedback"] = map[string]any{"blockReason": reply.BlockReason}
		return out
	}
	text := reply.Text
	if text == "" {
		text = "echo: " + req.Prompt
	}
	var parts []any
	image := func(data []byte) map[string]any {
		return map[string]any{"inlineData": map[string]any{"mimeType": "image/png", "data": base64.StdEncoding.EncodeToString(data)}}
	}
	if reply.Thoughts {
		parts = append(parts,
			map[string]any{"text": "Sketching the composition first.", "thought": true},
			map[string]any{"thought": true, "thoughtSignature": "c2lnbmF0dXJl", "inlineData": image(fakekit.PNG(8, 8, "draft"))["inlineData"]})
	}
	parts = append(parts, map[string]any{"text": text})
	if req.WantsImage() && !reply.TextOnly {
		img := reply.Image
		if img == nil {
			seed := req.Prompt
			for _, in := range req.Images {
				seed += string(in)
			}
			img = fakekit.PNG(48, 32, seed)
		}
		parts = append(parts, image(img))
	}
	finish := reply.FinishReason
	if finish == "" {
		finish = "STOP"
	}
	words := len(strings.Fields(text))
	usage["candidatesTokenCount"] = words
	usage["totalTokenCount"] = words + len(strings.Fields(req.Prompt))
	out["candidates"] = []any{map[string]any{
		"content": map[string]any{"role": "model", "parts": parts}, "finishReason": finish, "index": 0,
		"safetyRatings": []any{map[string]any{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"}},
	}}
	return out
}

// cut writes part of the body, then drops the connection (§4.3
// disconnect, here mid-body).
func cut(w http.ResponseWriter, partial []byte) {
	w.Header().Set("Content-Length", fmt.Sprint(2*len(partial)+1))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(partial)
	fakekit.Drop(w)
}

// stream answers :streamGenerateContent?alt=sse (§4.2): the answer as
// Server-Sent Events, each a GenerateContentResponse carrying the next
// words of the text; the last carries the finishReason and the usage, and
// the image of an image request. A blocked prompt is one event with its
// promptFeedback. CutBody drops the connection after half the chunks.
func stream(w http.ResponseWriter, req Request, reply Reply) {
	whole := answer(req, reply)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	send := func(v any) {
		raw, _ := json.Marshal(v) // maps of plain values always encode
		_, _ = fmt.Fprintf(w, "data: %s\r\n\r\n", raw)
		if flusher != nil {
			flusher.Flush()
		}
	}
	cands, ok := whole["candidates"].([]any)
	if !ok {
		send(whole)
		return
	}
	cand := cands[0].(map[string]any)
	parts := cand["content"].(map[string]any)["parts"].([]any)
	var thoughts, rest []any
	text := ""
	for _, p := range parts {
		pm := p.(map[string]any)
		switch {
		case pm["thought"] == true:
			thoughts = append(thoughts, p)
		case pm["text"] != nil:
			text = pm["text"].(string)
		default:
			rest = append(rest, p)
		}
	}
	n := reply.ChunkWords
	if n <= 0 {
		n = 3
	}
	words := strings.SplitAfter(text, " ")
	var chunks []string
	for i := 0; i < len(words); i += n {
		chunks = append(chunks, strings.Join(words[i:min(i+n, len(words))], ""))
	}
	chunk := func(parts []any, last bool) map[string]any {
		c := map[string]any{"content": map[string]any{"role": "model", "parts": parts}, "index": 0}
		out := map[string]any{"candidates": []any{c}, "modelVersion": whole["modelVersion"], "responseId": whole["responseId"]}
		if last {
			c["finishReason"] = cand["finishReason"]
			out["usageMetadata"] = whole["usageMetadata"]
		}
		return out
	}
	if len(thoughts) > 0 {
		send(chunk(thoughts, false))
	}
	for i, c := range chunks {
		if reply.CutBody && i == len(chunks)/2 {
			fakekit.Drop(w)
			return
		}
		last := i == len(chunks)-1
		p := []any{map[string]any{"text": c}}
		if last {
			p = append(p, rest...)
		}
		send(chunk(p, last))
	}
}
