package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Client calls one compute server. It is safe for concurrent use.
type Client struct {
	base *url.URL
	key  string
	hc   *http.Client
	ua   string
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sends key as the bearer token of every request.
func WithAPIKey(key string) Option { return func(c *Client) { c.key = key } }

// WithHTTPClient sends the requests through hc (when not nil) instead of
// a client of the package's own. Watch streams last as long as a task
// runs: hc should have no Timeout (bound calls with their context
// instead).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.hc = hc
		}
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.ua = ua } }

// DefaultUserAgent is the User-Agent sent unless WithUserAgent sets one.
const DefaultUserAgent = "compute-go-client"

// New returns a client of the server at baseURL, such as
// "http://127.0.0.1:9000" (the API is under its /api/v1).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil {
		return nil, fmt.Errorf("client: server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: server URL %q: want an absolute http or https URL", baseURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("client: server URL %q: credentials go in the API key, not the URL", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, hc: &http.Client{}, ua: DefaultUserAgent}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// BaseURL is the server's URL as the client uses it.
func (c *Client) BaseURL() string { return c.base.String() }

// url is the absolute URL of an API path ("/api/v1/tasks/") with query q.
func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path += path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// newRequest builds a request to the server with the key and the client's
// headers; body, when not nil, is sent as JSON.
func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request body: %w", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	c.authorize(req)
	return req, nil
}

// authorize sets the key and the User-Agent.
func (c *Client) authorize(req *http.Request) {
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
}

// maxAnswerBytes bounds a JSON answer read into memory.
const maxAnswerBytes = 256 << 20

// do sends req and decodes a 2xx JSON answer into out (when not nil); any
// other answer is a *Problem.
func (c *Client) do(req *http.Request, out any) error {
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return readProblem(res)
	}
	if out == nil || res.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, maxProblemBytes))
		return nil
	}
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL.Path, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s %s: decoding the answer: %w", req.Method, req.URL.Path, err)
	}
	return nil
}

// call is newRequest followed by do.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, body, out any) error {
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

// callFor is call decoding the answer into a new T.
func callFor[T any](ctx context.Context, c *Client, method, path string, q url.Values, body any) (*T, error) {
	var v T
	if err := c.call(ctx, method, path, q, body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// sameOrigin reports whether u is served by the client's server (scheme,
// host and port), the only place the API key is sent.
func (c *Client) sameOrigin(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, c.base.Scheme) && strings.EqualFold(hostPort(u), hostPort(c.base))
}

// hostPort is u's host with its port, the scheme's default when absent.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if strings.EqualFold(u.Scheme, "https") {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// StatusOf returns the HTTP status of a *Problem in err's chain, or 0.
func StatusOf(err error) int {
	var p *Problem
	if errors.As(err, &p) {
		return p.Status
	}
	return 0
}

// escape escapes one path segment.
func escape(s string) string { return url.PathEscape(s) }
