// Package check holds what the generated-client programs share: the
// server's address and key from the environment, assertions that end the
// program with a non-zero status, and a transport that inspects what the
// generated clients send.
package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// Env returns COMPUTE_URL and COMPUTE_API_KEY, failing when either is unset.
func Env() (base, key string) {
	base, key = os.Getenv("COMPUTE_URL"), os.Getenv("COMPUTE_API_KEY")
	if base == "" || key == "" {
		Failf("COMPUTE_URL and COMPUTE_API_KEY must be set")
	}
	return base, key
}

// Failf reports a mismatch and exits with status 1.
func Failf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

// OK fails with the message unless cond holds.
func OK(cond bool, format string, args ...any) {
	if !cond {
		Failf(format, args...)
	}
}

// NoErr fails when err is not nil.
func NoErr(err error, what string) {
	if err != nil {
		Failf("%s: %v", what, err)
	}
}

// Recorder is an http.RoundTripper that keeps the last request body sent.
type Recorder struct {
	mu   sync.Mutex
	last []byte
}

// RoundTrip records the body and sends the request.
func (r *Recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(b))
		r.mu.Lock()
		r.last = b
		r.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// KeyCount reports how often key appears as a top-level key of the last
// body sent (-1 when it is no JSON object). A generator that sends a key
// twice leaves the server to pick one of the values.
func (r *Recorder) KeyCount(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	dec := json.NewDecoder(bytes.NewReader(r.last))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return -1
	}
	n := 0
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return -1
		}
		if k, _ := t.(string); k == key {
			n++
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return -1
		}
	}
	return n
}

// Client is an HTTP client that records request bodies in rec.
func Client(rec *Recorder) *http.Client {
	return &http.Client{Transport: rec, Timeout: 30 * time.Second}
}

// Until polls fn every 50 ms until it reports true, failing after 30 s.
func Until(what string, fn func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			Failf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
