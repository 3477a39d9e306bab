// Package fakekit holds what the fakes of hosted services (fal, Replicate,
// Cog) share: deterministic PNG outputs, output files served over HTTP
// until they expire, a change signal tests wait on instead of sleeping,
// phase timing a test can cut short, and a JSON poster for callbacks.
//
// It reproduces no service by itself; each fake says which section of
// reference/executors.md a behaviour comes from.
package fakekit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Forever is a phase duration that never elapses by itself: the phase ends
// only when a test advances the job (or it is cancelled or the fake
// closed).
const Forever time.Duration = -1

// PNG renders a w×h PNG whose colours follow from seed, so the same seed
// gives byte-identical files and different seeds visibly different ones: a
// diagonal gradient between two colours taken from a hash of seed. Sizes
// below 1 become 1.
func PNG(w, h int, seed string) []byte {
	w, h = max(w, 1), max(h, 1)
	sum := sha256.Sum256([]byte(seed))
	from := color.NRGBA{sum[0], sum[1], sum[2], 255}
	to := color.NRGBA{sum[3], sum[4], sum[5], 255}
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	span := max(w+h-2, 1)
	for y := range h {
		row := img.Pix[y*img.Stride:]
		for x := range w {
			t := (x + y) * 255 / span
			row[4*x] = mix(from.R, to.R, t)
			row[4*x+1] = mix(from.G, to.G, t)
			row[4*x+2] = mix(from.B, to.B, t)
			row[4*x+3] = 255
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	_ = enc.Encode(&buf, img) // writing to a bytes.Buffer cannot fail
	return buf.Bytes()
}

func mix(a, b uint8, t int) uint8 {
	return uint8((int(a)*(255-t) + int(b)*t) / 255)
}

// Changes is a broadcast signal: every state change of a fake calls
// Notify, and a waiter blocks on the channel Wait returned before it
// looked at the state. The zero value is ready to use.
type Changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel closed at the next Notify.
func (c *Changes) Wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch == nil {
		c.ch = make(chan struct{})
	}
	return c.ch
}

// Notify wakes every current waiter.
func (c *Changes) Notify() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ch != nil {
		close(c.ch)
	}
	c.ch = make(chan struct{})
}

// Until blocks until cond holds, re-checking it after every Notify, or
// until ctx ends (then it returns the context's error).
func (c *Changes) Until(ctx context.Context, cond func() bool) error {
	for {
		ch := c.Wait()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for a fake's state: %w", ctx.Err())
		}
	}
}

// PhaseEnd says why Phase returned.
type PhaseEnd int

// The reasons a phase ends.
const (
	// Elapsed: the duration passed.
	Elapsed PhaseEnd = iota
	// Advanced: a test cut the phase short.
	Advanced
	// Interrupted: the job was cancelled or the fake closed.
	Interrupted
	// Deadline: the extra deadline channel fired first.
	Deadline
)

// Phase waits for d (never when d is Forever, at once when d is 0), or a
// value on advance, or stop closing, or deadline firing (a nil deadline
// never fires).
func Phase(d time.Duration, advance <-chan struct{}, stop <-chan struct{}, deadline <-chan time.Time) PhaseEnd {
	var elapsed <-chan time.Time
	switch {
	case d == 0:
		return Elapsed
	case d > 0:
		t := time.NewTimer(d)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case <-elapsed:
		return Elapsed
	case <-advance:
		return Advanced
	case <-stop:
		return Interrupted
	case <-deadline:
		return Deadline
	}
}

// Files serves output files at {prefix}{name} until each expires: the
// hosted services hand out media URLs with a lifetime, so a client must
// download at once. The zero value is not usable; use NewFiles.
type Files struct {
	prefix string
	mu     sync.Mutex
	files  map[string]*file
	seq    int
}

type file struct {
	data        []byte
	contentType string
	expires     time.Time // zero: never
	downloads   int
}

// NewFiles returns an empty file store whose URLs' paths start with
// prefix (for example "/files/").
func NewFiles(prefix string) *Files {
	return &Files{prefix: prefix, files: map[string]*file{}}
}

// Put stores data under a fresh name ending in ext and returns the path to
// serve it at. A ttl ≤ 0 never expires.
func (f *Files) Put(data []byte, contentType, ext string, ttl time.Duration) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	name := fmt.Sprintf("out-%d%s", f.seq, ext)
	fl := &file{data: data, contentType: contentType}
	if ttl > 0 {
		fl.expires = time.Now().Add(ttl)
	}
	f.files[name] = fl
	return f.prefix + name
}

// Expire makes the file at path (as Put returned it) unavailable now.
func (f *Files) Expire(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files, path[min(len(f.prefix), len(path)):])
}

// Get returns the bytes and content type of the file at path (as Put
// returned it, or a URL's path) while it is stored; ok is false for a
// file never stored, expired or removed.
func (f *Files) Get(path string) (data []byte, contentType string, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl, ok := f.files[path[min(len(f.prefix), len(path)):]]
	if !ok || !strings.HasPrefix(path, f.prefix) || (!fl.expires.IsZero() && !time.Now().Before(fl.expires)) {
		return nil, "", false
	}
	return fl.data, fl.contentType, true
}

// Downloads returns how often the file at path was served.
func (f *Files) Downloads(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl, ok := f.files[path[min(len(f.prefix), len(path)):]]; ok {
		return fl.downloads
	}
	return 0
}

// ServeHTTP answers GET for a stored, unexpired file and 404 otherwise.
func (f *Files) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Path[min(len(f.prefix), len(r.URL.Path)):]
	f.mu.Lock()
	fl, ok := f.files[name]
	if ok && !fl.expires.IsZero() && !time.Now().Before(fl.expires) {
		delete(f.files, name)
		ok = false
	}
	if ok {
		fl.downloads++
	}
	f.mu.Unlock()
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", fl.contentType)
	w.Header().Set("Content-Length", fmt.Sprint(len(fl.data)))
	_, _ = w.Write(fl.data)
}

// BaseURL returns scheme://host of the request, so a fake's absolute URLs
// point back at whatever address it is served on.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// Post sends body as JSON to url with the extra headers and returns the
// response status; the response body is read and dropped.
func Post(ctx context.Context, client *http.Client, url string, header http.Header, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("building callback to %s: %w", url, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("posting callback to %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// WriteJSON answers code with v encoded as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v) // the client may be gone; nothing to do
}

// Drop sends what the handler wrote so far, then closes the connection
// without ending the response, so the client reads a body that breaks
// off (a mid-stream disconnect). The handler must return after it.
func Drop(w http.ResponseWriter) {
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // net/http's own way to abort a response
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = buf.Flush() // the client may be gone already
	_ = conn.Close()
}

// Ask asks reply (nil: the zero R) how to answer req, in the request's
// context, so that reply may hold the request until its client goes away.
// It reports false when the client went away meanwhile: the handler then
// returns without answering. A non-empty retryAfter(R) is set as the
// Retry-After header.
func Ask[Q, R any](w http.ResponseWriter, r *http.Request, reply func(context.Context, Q) R, req Q, retryAfter func(R) string) (R, bool) {
	var out R
	if reply != nil {
		out = reply(r.Context(), req)
	}
	if r.Context().Err() != nil {
		return out, false
	}
	if v := retryAfter(out); v != "" {
		w.Header().Set("Retry-After", v)
	}
	return out, true
}
