// Package hosted holds what the executors of hosted model services (fal,
// Replicate, Cog) share: JSON calls classified into the executor error
// taxonomy, Retry-After, polling backoff, monotonic progress, handing a
// task's inputs to a service that cannot fetch our URLs (data URIs, or
// streamed to its storage through an Uploader), and
// downloading a job's outputs into the artifact store at once.
package hosted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor"
)

// maxBody bounds a service's JSON answer.
const maxBody = 32 << 20

// DefaultRetryAfter is how long a 429 without a Retry-After header backs
// off.
const DefaultRetryAfter = 10 * time.Second

// Client calls a service's JSON API.
type Client struct {
	// HTTP makes the calls (nil: http.DefaultClient).
	HTTP *http.Client
	// Authorization is the Authorization header sent with every call
	// ("Key …", "Bearer …"); empty sends none. It is never part of an
	// error.
	Authorization string
}

// Response is a service's answer.
type Response struct {
	// Code and Header are the HTTP status and headers.
	Code   int
	Header http.Header
	// Body is the answer's body, read whole.
	Body []byte
}

// Decode decodes the body as JSON into v, keeping numbers exact (fal seeds
// exceed 2^53).
func (r *Response) Decode(v any) error {
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return executor.Errorf(executor.ProviderError, "decoding the answer (%d): %w", r.Code, err)
	}
	return nil
}

// Do sends body (JSON; nil sends none) with method to url and reads the
// answer. A call that gets no answer is classified with
// executor.FromTransport; any answer is returned, whatever its status.
func (c *Client) Do(ctx context.Context, method, url string, body any, header http.Header) (*Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, executor.Errorf(executor.InvalidInput, "encoding the request: %w", err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, executor.Errorf(executor.InvalidInput, "%s %s: %w", method, redact(url), err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	return c.Send(req)
}

// Open sends req, with the client's Authorization, and returns the answer
// of whatever status with its body open: the caller reads (a stream) and
// closes it. A call that gets no answer is classified with
// executor.FromTransport.
func (c *Client) Open(req *http.Request) (*http.Response, error) {
	if c.Authorization != "" {
		req.Header.Set("Authorization", c.Authorization)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, executor.FromTransport(fmt.Errorf("%s %s: %w", req.Method, redact(req.URL.String()), unwrapURL(err)))
	}
	return resp, nil
}

// Send sends req (Open) and reads the answer whole.
func (c *Client) Send(req *http.Request) (*Response, error) {
	resp, err := c.Open(req)
	if err != nil {
		return nil, err
	}
	return Read(resp)
}

// Read reads an answer's body whole (up to 32 MiB) and closes it.
func Read(resp *http.Response) (*Response, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, executor.FromTransport(fmt.Errorf("reading the answer of %s %s: %w", resp.Request.Method, redact(resp.Request.URL.String()), err))
	}
	return &Response{Code: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// unwrapURL drops *url.Error's own quoting of the URL (query included),
// which the caller reports redacted.
func unwrapURL(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// redact drops a URL's query, which may carry a token.
func redact(url string) string {
	u, _, _ := strings.Cut(url, "?")
	return u
}

// StatusError classifies an answer that is not a success: 429 backs off
// for its Retry-After (DefaultRetryAfter without one), the rest as
// executor.FromStatus says. what names the call ("submitting to fal").
func StatusError(what string, r *Response) error {
	err := fmt.Errorf("%s: HTTP %d: %s", what, r.Code, Detail(r.Body))
	if r.Code == http.StatusTooManyRequests {
		after := RetryAfter(r.Header)
		if after <= 0 {
			after = DefaultRetryAfter
		}
		return executor.Retry(after, err)
	}
	return executor.FromStatus(r.Code, err)
}

// Detail is a short message from an error body: its detail, error or
// title field (an error object's message, as OpenAI and Google put it),
// else the body's start.
func Detail(body []byte) string {
	var v struct {
		Detail json.RawMessage `json:"detail"`
		Error  json.RawMessage `json:"error"`
		Title  string          `json:"title"`
	}
	if json.Unmarshal(body, &v) == nil {
		for _, raw := range []json.RawMessage{v.Detail, v.Error} {
			var s string
			switch {
			case len(raw) == 0 || string(raw) == "null":
			case json.Unmarshal(raw, &s) == nil:
				return clip(s)
			case messageOf(raw) != "":
				return clip(messageOf(raw))
			default:
				return clip(string(raw))
			}
		}
		if v.Title != "" {
			return clip(v.Title)
		}
	}
	return clip(strings.TrimSpace(string(body)))
}

// messageOf is the message of an error object ({"message": …}), "" for
// anything else.
func messageOf(raw json.RawMessage) string {
	var e struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(raw, &e) // not an object: no message
	return e.Message
}

func clip(s string) string {
	const n = 300
	if len(s) > n {
		return s[:n] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// RetryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable.
func RetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(t))
	}
	return 0
}

// Failure classifies a failed prediction's error (Replicate and Cog, §3.1
// "error is usually a string"; §5.4): a safety filter's refusal and
// invalid input are not retried; any other failure (a crash, out of
// memory) is the provider's, retried. what names the job.
func Failure(what string, e any) error {
	msg, ok := e.(string)
	if !ok {
		raw, _ := json.Marshal(e)
		msg = string(raw)
	}
	low := strings.ToLower(msg)
	err := fmt.Errorf("%s failed: %s", what, clip(msg))
	switch {
	case strings.Contains(low, "nsfw") || strings.Contains(low, "safety") || strings.Contains(low, "sensitive content"):
		return executor.Classify(executor.SafetyBlocked, err)
	case strings.Contains(low, "validation") || strings.Contains(low, "invalid input") || strings.Contains(low, "is required"):
		return executor.Classify(executor.InvalidInput, err)
	}
	return executor.Classify(executor.ProviderError, err)
}
