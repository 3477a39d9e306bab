package cog

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// CallbackPath is where the API serves Cog's webhooks: the job's token
// follows ("/api/v1/callbacks/cog/{token}").
const CallbackPath = "/api/v1/callbacks/cog/"

// maxCallback bounds a webhook body: outputs come inline as base64 data
// URLs (§3.2), so it can be large.
const maxCallback = 64 << 20

// forgetAfter is how long a token's inbox outlives its last use, so a
// terminal webhook retried late (§3.2: up to 12 times) still finds it.
const forgetAfter = 30 * time.Minute

// Callbacks receives the webhooks of Cog containers and hands them to the
// runs waiting for them. Every job has an unguessable token (256 random
// bits) in its webhook URL; a webhook for a token no run expects is
// refused with 404, one without the container's WEBHOOK_AUTH_TOKEN (when
// the executor has one) with 401.
//
// The inboxes live in the process's memory: a webhook reaches a run when
// the API process that receives it is the worker process waiting (the
// serve role). Where they differ, the run does not hear it and reconciles
// when its callback timeout passes (see Executor.Wait).
type Callbacks struct {
	mu    sync.Mutex
	boxes map[string]*inbox
	now   func() time.Time
}

// NewCallbacks returns an empty set of inboxes.
func NewCallbacks() *Callbacks {
	return &Callbacks{boxes: map[string]*inbox{}, now: time.Now}
}

// inbox is what arrived for one job.
type inbox struct {
	auth    string // the bearer token the container sends, or ""
	latest  *prediction
	changed chan struct{} // closed and replaced when latest changes
	used    time.Time
}

// newToken returns an unguessable token.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// expect opens (or keeps) the inbox of token, whose webhooks must carry
// auth as a bearer token when it is not empty.
func (c *Callbacks) expect(token, auth string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for t, b := range c.boxes {
		if now.Sub(b.used) > forgetAfter {
			delete(c.boxes, t)
		}
	}
	b, ok := c.boxes[token]
	if !ok {
		b = &inbox{changed: make(chan struct{})}
		c.boxes[token] = b
	}
	b.auth, b.used = auth, now
}

// forget closes the inbox of token.
func (c *Callbacks) forget(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.boxes, token)
}

// latest returns the last prediction state received for token (nil when
// none) and a channel closed when another arrives.
func (c *Callbacks) latest(token string) (*prediction, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.boxes[token]
	if !ok {
		ch := make(chan struct{})
		return nil, ch
	}
	b.used = c.now()
	return b.latest, b.changed
}

// ServeHTTP receives one webhook: POST {CallbackPath}{token} with the
// prediction object as its body (§3.2). The token is the path's last
// segment (or its "token" path value).
func (c *Callbacks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		problem(w, http.StatusMethodNotAllowed, "only POST delivers a callback")
		return
	}
	token := r.PathValue("token")
	if token == "" {
		token = r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
	}
	c.mu.Lock()
	b, ok := c.boxes[token]
	var auth string
	if ok {
		auth = b.auth
	}
	c.mu.Unlock()
	if !ok {
		problem(w, http.StatusNotFound, "no job expects this callback")
		return
	}
	if auth != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+auth)) != 1 {
		problem(w, http.StatusUnauthorized, "wrong or missing bearer token")
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxCallback+1))
	if err != nil || len(data) > maxCallback {
		problem(w, http.StatusRequestEntityTooLarge, "unreadable or too large body")
		return
	}
	var p prediction
	if err := json.Unmarshal(data, &p); err != nil || p.Status == "" {
		problem(w, http.StatusBadRequest, "the body is not a prediction object")
		return
	}
	c.deliver(token, &p)
	w.WriteHeader(http.StatusOK)
}

// deliver records p for token. Webhooks may come twice or out of order
// (§5.2): a terminal state is never replaced.
func (c *Callbacks) deliver(token string, p *prediction) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, ok := c.boxes[token]
	if !ok || (b.latest != nil && terminal(b.latest.Status)) {
		return
	}
	b.latest, b.used = p, c.now()
	close(b.changed)
	b.changed = make(chan struct{})
}

// problem answers an RFC 9457 problem, as the rest of the API does.
func problem(w http.ResponseWriter, code int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(code), "status": code, "detail": detail})
}
