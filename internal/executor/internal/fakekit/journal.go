package fakekit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
)

// Journal is a list of records (requests, cancels, deliveries) a fake
// appends to and tests read and wait on. The zero value is ready to use.
type Journal[T any] struct {
	changes Changes
	mu      sync.Mutex
	items   []T
}

// Add appends v.
func (j *Journal[T]) Add(v T) {
	j.mu.Lock()
	j.items = append(j.items, v)
	j.mu.Unlock()
	j.changes.Notify()
}

// All returns a copy of the records, oldest first.
func (j *Journal[T]) All() []T {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.items)
}

// WaitLen blocks until there are at least n records, or ctx ends.
func (j *Journal[T]) WaitLen(ctx context.Context, n int) error {
	return j.changes.Until(ctx, func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return len(j.items) >= n
	})
}

// Nudge sends on a job's advance channel without blocking and reports
// NewAdvance returns a channel for Nudge and Phase. Advances accumulate
// (up to 64), so a test may end several steps in a row without waiting
// for the job to take each one.
func NewAdvance() chan struct{} { return make(chan struct{}, 64) }

// whether it did (false when 64 steps are already pending).
func Nudge(advance chan struct{}) bool {
	select {
	case advance <- struct{}{}:
		return true
	default:
		return false
	}
}

// Served is a handler served on a loopback port.
type Served struct {
	// URL is the base URL (http://127.0.0.1:port).
	URL string
	srv *httptest.Server
}

// Serve starts h on a loopback port.
func Serve(h http.Handler) Served {
	srv := httptest.NewServer(h)
	return Served{URL: srv.URL, srv: srv}
}

// Shutdown drops open connections and stops the listener.
func (s Served) Shutdown() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Outputs renders the default image outputs of the Replicate and Cog fakes
// from a model input: num_outputs (1 to 4, default 1) PNGs of width ×
// height (default, and beyond 2048, 64 × 64), each seeded from id, its
// index and the input.
func Outputs(id string, input json.RawMessage) [][]byte {
	var in struct {
		Width      int `json:"width"`
		Height     int `json:"height"`
		NumOutputs int `json:"num_outputs"`
	}
	_ = json.Unmarshal(input, &in) // odd fields fall back to defaults
	w, h := in.Width, in.Height
	if w <= 0 || h <= 0 || w > 2048 || h > 2048 {
		w, h = 64, 64
	}
	out := make([][]byte, min(max(in.NumOutputs, 1), 4))
	for i := range out {
		out[i] = PNG(w, h, fmt.Sprintf("%s/%d/%s", id, i, input))
	}
	return out
}
