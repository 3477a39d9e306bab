package fakekit

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Call is one HTTP exchange a test made with a fake.
type Call struct {
	Code   int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as a JSON object, failing the test otherwise.
func (c Call) JSON(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(c.Body, &v); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", c.Body, err)
	}
	return v
}

// Do makes one request with the test's context; header holds name, value
// pairs.
func Do(t testing.TB, method, url, body string, header ...string) Call {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return Call{resp.StatusCode, resp.Header, data}
}

// Receiver is a webhook endpoint for tests: it records every request and
// answers what Answer says (200 when nil) for the nth request (from 1).
type Receiver struct {
	*httptest.Server
	answer  func(n int, body []byte) int
	mu      sync.Mutex
	headers []http.Header
	bodies  [][]byte
}

// NewReceiver starts a Receiver closed when the test ends.
func NewReceiver(t testing.TB, answer func(n int, body []byte) int) *Receiver {
	rc := &Receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body) // a cut body is recorded as far as it came
		rc.mu.Lock()
		rc.headers = append(rc.headers, r.Header.Clone())
		rc.bodies = append(rc.bodies, body)
		n := len(rc.bodies)
		rc.mu.Unlock()
		code := http.StatusOK
		if rc.answer != nil {
			code = rc.answer(n, body)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

// Got returns the headers and bodies received so far.
func (rc *Receiver) Got() ([]http.Header, [][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]http.Header(nil), rc.headers...), append([][]byte(nil), rc.bodies...)
}
