// Package openaifake is a fake OpenAI-compatible API for tests, built from
// reference/executors.md §4.1 and §4.3 (every behaviour names its
// section): POST /v1/chat/completions (whole, or streamed as Server-Sent
// Events with [DONE] and the usage-only chunk), POST
// /v1/images/generations and /v1/images/edits (b64_json or URLs that
// expire after 60 minutes), Bearer authentication, and errors in OpenAI's
// shape. A test steers each request with Config.Reply: a 429 with
// Retry-After, a 503 overload, a content-policy refusal, a cut stream, an
// answer held until the client drops the connection, multi-megabyte
// images and stream lines over 64 KiB.
package openaifake

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// Request is a recorded request.
type Request struct {
	// Path is the URL path ("/v1/chat/completions").
	Path string
	// Header holds the request's headers (the key included).
	Header http.Header
	// Body is the JSON body; for an edit, the form's fields as a JSON
	// object.
	Body json.RawMessage
	// Model and Prompt are read from the body: the prompt is an image
	// request's, or the text of a chat's last user message.
	Model, Prompt string
	// Stream and IncludeUsage are the chat's stream settings.
	Stream, IncludeUsage bool
	// Image and Mask are an edit's uploaded files; Images are all its
	// input images, Image first (several arrive as image[] ⚠, the form
	// the OpenAI SDKs send a list of images in).
	Image, Mask []byte
	Images      [][]byte
	// At is when it arrived.
	At time.Time
}

// Reply is how the fake answers one request. The zero value answers with
// success: a chat echoes the prompt, an image request returns one PNG.
type Reply struct {
	// Status, when not 0 or 200, answers an error in OpenAI's shape
	// {"error": {message, type, param, code}} (§4.1 Errors) with
	// ErrorType, ErrorCode and Message.
	Status                        int
	ErrorType, ErrorCode, Message string
	// RetryAfter is sent as the Retry-After header (§4.3 "429 +
	// Retry-After").
	RetryAfter string

	// Text is a chat's answer (default "echo: " + prompt); FinishReason
	// its finish_reason (default stop; §4.1 stop, length,
	// content_filter…); Refusal the message's refusal.
	Text, FinishReason, Refusal string
	// ChunkSize is how many bytes of Text each streamed chunk carries
	// (default 4); a large one makes SSE lines over 64 KiB (§4.3).
	ChunkSize int
	// UsageChoices is the choices of the usage-only chunk sent when the
	// client asks include_usage: "[]" (default, OpenAI) or "null" (vLLM)
	// (§4.1 Streaming).
	UsageChoices string
	// NoDone ends the stream without "data: [DONE]".
	NoDone bool
	// CutAfter drops the connection after this many content chunks
	// (§4.3 "mid-stream disconnect"); 0 never.
	CutAfter int
	// StreamError sends this error object as a stream's last event instead
	// of finishing (OpenAI-compatible servers report late failures so).
	StreamError map[string]any

	// Image is the image returned (default a small PNG from the prompt);
	// a multi-megabyte one exercises large base64 bodies (§4.3).
	Image []byte
	// ImageURL answers the image by URL (served by the fake, valid 60
	// minutes, §4.1) instead of b64_json; a request's response_format
	// "url" does too.
	ImageURL bool
}

// Config sets the fake's behaviour.
type Config struct {
	// Keys are the accepted API keys (§4.1 "Authorization: Bearer");
	// empty accepts any non-empty key. A request without an accepted key
	// answers 401 invalid_api_key.
	Keys []string
	// Reply decides each request's answer; it runs in the request's
	// handler with the request's context, so it may block (hold the
	// request) until that context ends, i.e. the client drops the
	// connection. Nil answers every request with the zero Reply.
	Reply func(ctx context.Context, r Request) Reply
}

// Fake is the OpenAI-compatible API as an http.Handler.
type Fake struct {
	cfg      Config
	files    *fakekit.Files
	requests fakekit.Journal[Request]
}

// New returns a fake with cfg's behaviour.
func New(cfg Config) *Fake {
	return &Fake{cfg: cfg, files: fakekit.NewFiles("/files/")}
}

// Requests returns the requests received, oldest first (refused ones
// included).
func (f *Fake) Requests() []Request { return f.requests.All() }

// WaitRequests blocks until n requests arrived or ctx ends.
func (f *Fake) WaitRequests(ctx context.Context, n int) error { return f.requests.WaitLen(ctx, n) }

// Server is a Fake served on a loopback port.
type Server struct {
	*Fake
	// URL is the base URL to configure, version path included
	// (http://127.0.0.1:PORT/v1).
	URL    string
	served fakekit.Served
}

// Serve starts a fake on a loopback port.
func Serve(cfg Config) *Server {
	f := New(cfg)
	s := fakekit.Serve(f)
	return &Server{Fake: f, URL: s.URL + "/v1", served: s}
}

// Close drops open connections and stops the server.
func (s *Server) Close() { s.served.Shutdown() }

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/files/") && r.Method == http.MethodGet {
		f.files.ServeHTTP(w, r)
		return
	}
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "method not allowed")
		return
	}
	var (
		req Request
		err error
	)
	switch r.URL.Path {
	case "/v1/chat/completions", "/v1/images/generations":
		req, err = readJSON(r)
	case "/v1/images/edits":
		req, err = readEdit(r)
	default:
		writeError(w, http.StatusNotFound, "invalid_request_error", "unknown_url", "Invalid URL (POST "+r.URL.Path+")")
		return
	}
	req.Path, req.Header, req.At = r.URL.Path, r.Header.Clone(), time.Now()
	f.requests.Add(req)
	if !f.authorized(r) {
		// §4.1 errors: 401 for a missing or wrong key.
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request_error", "", err.Error())
		return
	}
	reply, ok := fakekit.Ask(w, r, f.cfg.Reply, req, func(r Reply) string { return r.RetryAfter })
	if !ok {
		return // the client went away (a cancel drops the connection, §0)
	}
	if reply.Status != 0 && reply.Status != http.StatusOK {
		writeError(w, reply.Status, reply.ErrorType, reply.ErrorCode, reply.Message)
		return
	}
	switch {
	case req.Path == "/v1/chat/completions" && req.Stream:
		f.stream(w, req, reply)
	case req.Path == "/v1/chat/completions":
		fakekit.WriteJSON(w, http.StatusOK, completion(req, reply))
	default:
		f.images(w, r, req, reply)
	}
}

// authorized checks the Bearer key (§4.1).
func (f *Fake) authorized(r *http.Request) bool {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		return false
	}
	return len(f.cfg.Keys) == 0 || slices.Contains(f.cfg.Keys, key)
}

// writeError answers OpenAI's error shape (§4.1 Errors).
func writeError(w http.ResponseWriter, code int, typ, errCode, msg string) {
	if typ == "" {
		typ = map[int]string{
			http.StatusTooManyRequests: "rate_limit_error", http.StatusServiceUnavailable: "server_error",
			http.StatusInternalServerError: "server_error", http.StatusBadRequest: "invalid_request_error",
		}[code]
	}
	if msg == "" {
		msg = http.StatusText(code)
	}
	var c any
	if errCode != "" {
		c = errCode
	}
	fakekit.WriteJSON(w, code, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": c}})
}

// chatBody is the part of a chat or image request the fake reads.
type chatBody struct {
	Model    string `json:"model"`
	Prompt   string `json:"prompt"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// readJSON reads a JSON request (§4.1 chat completions, images).
func readJSON(r *http.Request) (Request, error) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return Request{}, fmt.Errorf("reading the body: %w", err)
	}
	req := Request{Body: raw}
	var b chatBody
	if err := json.Unmarshal(raw, &b); err != nil {
		return req, fmt.Errorf("we could not parse the JSON body of your request: %w", err)
	}
	req.Model, req.Prompt, req.Stream, req.IncludeUsage = b.Model, b.Prompt, b.Stream, b.StreamOptions.IncludeUsage
	for _, m := range b.Messages {
		if m.Role == "user" {
			req.Prompt = contentText(m.Content)
		}
	}
	if req.Model == "" {
		return req, fmt.Errorf("you must provide a model parameter")
	}
	return req, nil
}

// contentText is a message content's text: the string, or its text parts
// joined (§4.1 content parts).
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts) // neither form: no text
	var out []string
	for _, p := range parts {
		if p.Type == "text" {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, "\n")
}

// readEdit reads an edit's multipart form (§4.1 "multipart image,
// optional mask, prompt"): one image, or several as image[] ⚠.
func readEdit(r *http.Request) (Request, error) {
	if err := r.ParseMultipartForm(64 << 20); err != nil {
		return Request{}, fmt.Errorf("the edit must be multipart/form-data: %w", err)
	}
	fields := map[string]string{}
	for k, v := range r.MultipartForm.Value {
		fields[k] = v[0]
	}
	raw, _ := json.Marshal(fields) // a map of strings always encodes
	req := Request{Body: raw, Model: fields["model"], Prompt: fields["prompt"]}
	for _, name := range []string{"image", "image[]", "mask"} {
		for _, fh := range r.MultipartForm.File[name] {
			file, err := fh.Open()
			if err != nil {
				return req, fmt.Errorf("reading %s: %w", name, err)
			}
			data, err := io.ReadAll(file)
			_ = file.Close()
			if err != nil {
				return req, fmt.Errorf("reading %s: %w", name, err)
			}
			if name == "mask" {
				req.Mask = data
				continue
			}
			req.Images = append(req.Images, data)
		}
	}
	if len(r.MultipartForm.File["image"]) > 0 && len(r.MultipartForm.File["image[]"]) > 0 {
		return req, fmt.Errorf("send image or image[], not both")
	}
	if len(req.Images) > 0 {
		req.Image = req.Images[0]
	}
	if req.Image == nil {
		return req, fmt.Errorf("image is required")
	}
	if req.Prompt == "" {
		return req, fmt.Errorf("prompt is required")
	}
	return req, nil
}
