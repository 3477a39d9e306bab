package cog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/store"
)

// CallbackPath is where the API serves Cog's webhooks: the job's token
// follows ("/api/v1/callbacks/cog/{token}").
const CallbackPath = "/api/v1/callbacks/cog/"

// maxCallback bounds a webhook body: outputs come inline as base64 data
// URLs (§3.2), so it can be large.
const maxCallback = 64 << 20

// forgetAfter is how long a job's inbox outlives its last use (an open, a
// webhook, a waiting run's refresh), so a terminal webhook retried late
// (§3.2: up to 12 times) still finds it.
const forgetAfter = 30 * time.Minute

// pollEvery is how often a run reads a shared inbox while it waits: a
// webhook another process received reaches the run within it.
const pollEvery = 300 * time.Millisecond

// noBody is ReadInbox's after when the inbox's body is not wanted.
const noBody = math.MaxInt64

// Callbacks receives the webhooks of Cog containers and hands them to the
// runs waiting for them. Every job has an unguessable token (256 random
// bits) in its webhook URL; a webhook for a token no run expects is
// refused with 404, one without the container's WEBHOOK_AUTH_TOKEN (when
// the executor has one) with 401.
//
// What arrived for a job is kept in its inbox (store.Inbox), named by the
// sha256 of its token, with the sha256 of the bearer token its webhooks
// must carry: neither secret is kept. Shared callbacks (NewSharedCallbacks)
// keep the inboxes in the task store, so a webhook received by any API
// process reaches the run waiting in any worker process, which reads its
// inbox every pollEvery, and a webhook that came while no process waited
// (a worker restarting) is there when the run is recovered. A webhook
// received by the process whose run waits wakes the run at once. Without
// a store (NewCallbacks) the inboxes live in this process's memory and
// only its own runs hear its webhooks.
type Callbacks struct {
	st     store.Inbox
	shared bool
	now    func() time.Time

	mu sync.Mutex
	// wake holds, by token digest, a channel closed when a webhook this
	// process received for a run waiting here was stored.
	wake map[string]chan struct{}
}

// NewCallbacks returns callbacks whose inboxes live in this process's
// memory: for an executor tested alone, where the API and the run share
// the process.
func NewCallbacks() *Callbacks {
	return &Callbacks{st: newMemInbox(time.Now), now: time.Now, wake: map[string]chan struct{}{}}
}

// NewSharedCallbacks returns callbacks whose inboxes are kept in st, the
// task store every process of a deployment shares.
func NewSharedCallbacks(st store.Inbox) *Callbacks {
	return &Callbacks{st: st, shared: true, now: time.Now, wake: map[string]chan struct{}{}}
}

// newToken returns an unguessable token.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// digest is the hex sha256 of a secret, the form in which inboxes keep
// tokens; "" stays "" (no bearer token required).
func digest(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// authorized reports whether an Authorization header carries the bearer
// token whose digest is want (any header does when want is "").
func authorized(want, header string) bool {
	if want == "" {
		return true
	}
	got, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(digest(got)), []byte(want)) == 1
}

// errClosed is what a run finds when the inbox of its job was closed: an
// earlier run of the same attempt ended its wait (taking the prediction's
// end, if one came) and then stopped before its task was stored (a worker
// killed in between). Nothing more will come.
var errClosed = errors.New("the callback inbox was closed")

// mailbox is one job's inbox as a run sees it.
type mailbox struct {
	c          *Callbacks
	hash, auth string
	seen       int64 // the last message's number handed to the run
}

// box returns the inbox of the job of token, whose webhooks must carry
// auth as a bearer token when it is not empty.
func (c *Callbacks) box(token, auth string) *mailbox {
	return &mailbox{c: c, hash: digest(token), auth: digest(auth)}
}

// open opens the inbox, or keeps the one there with what it holds, until
// forgetAfter from now.
func (b *mailbox) open(ctx context.Context) error {
	return b.c.st.OpenInbox(ctx, b.hash, b.auth, b.c.now().Add(forgetAfter))
}

// close ends the inbox: the job no longer waits for it.
func (b *mailbox) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	// An inbox not closed keeps its last message until it expires.
	_ = b.c.st.CloseInbox(ctx, b.hash, b.c.now().Add(forgetAfter))
}

// changed returns a channel closed when this process stores a webhook for
// the inbox; stop ends it.
func (b *mailbox) changed() <-chan struct{} {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	ch, ok := b.c.wake[b.hash]
	if !ok {
		ch = make(chan struct{})
		b.c.wake[b.hash] = ch
	}
	return ch
}

// stop forgets the channel of changed.
func (b *mailbox) stop() {
	b.c.mu.Lock()
	defer b.c.mu.Unlock()
	delete(b.c.wake, b.hash)
}

// poll returns a ticker's channel when other processes may post to the
// inbox (nil otherwise: changed is enough), and its stop function.
func (b *mailbox) poll() (<-chan time.Time, func()) {
	if !b.c.shared {
		return nil, func() {}
	}
	t := time.NewTicker(pollEvery)
	return t.C, t.Stop
}

// next returns the prediction state that arrived since the last next, or
// nil. The inbox is opened again if it expired (a wait without webhooks
// longer than forgetAfter), and its expiry pushed back while the run
// waits. A store that cannot be read is asked again at the next poll (the
// callback timeout still reconciles). errClosed: see there.
func (b *mailbox) next(ctx context.Context) (*prediction, error) {
	m, err := b.c.st.ReadInbox(ctx, b.hash, b.seen)
	if errors.Is(err, store.ErrInboxNotFound) {
		_ = b.open(ctx)
		return nil, nil
	}
	if err != nil {
		return nil, nil
	}
	if m.ExpiresAt.Before(b.c.now().Add(forgetAfter / 2)) {
		_ = b.open(ctx)
	}
	// A final message is handed out once, and ends the wait: a final
	// inbox with nothing new, or without its body, was closed.
	if m.Final && (m.Seq <= b.seen || m.Body == nil) {
		return nil, errClosed
	}
	if m.Seq <= b.seen || m.Body == nil {
		return nil, nil
	}
	b.seen = m.Seq
	var p prediction
	if err := json.Unmarshal(m.Body, &p); err != nil {
		return nil, nil // not ours: ServeHTTP stores what it decoded
	}
	return &p, nil
}

// ended reports whether the inbox takes no more messages: it holds the
// prediction's end, or was closed (errClosed); the body is not read.
func (b *mailbox) ended(ctx context.Context) bool {
	m, err := b.c.st.ReadInbox(ctx, b.hash, noBody)
	return err == nil && m.Final
}

// ServeHTTP receives one webhook: POST {CallbackPath}{token} with the
// prediction object as its body (§3.2). The token is the path's last
// segment (or its "token" path value). When the inbox cannot be read or
// written the answer is 503, which Cog retries for a terminal webhook.
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
	hash := digest(token)
	m, err := c.st.ReadInbox(r.Context(), hash, noBody)
	if errors.Is(err, store.ErrInboxNotFound) || token == "" {
		problem(w, http.StatusNotFound, "no job expects this callback")
		return
	}
	if err != nil {
		problem(w, http.StatusServiceUnavailable, "the callback could not be recorded now; retry")
		return
	}
	if !authorized(m.Auth, r.Header.Get("Authorization")) {
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
	// Only what the run reads is kept: the prediction's input (which
	// may hold inline images) is not.
	body, err := json.Marshal(&p)
	if err != nil {
		problem(w, http.StatusBadRequest, "the body is not a prediction object")
		return
	}
	// Webhooks may come twice or out of order (§5.2): the store keeps a
	// terminal state and writes nothing after it.
	wrote, err := c.st.PostInbox(r.Context(), hash, body, terminal(p.Status), c.now().Add(forgetAfter))
	switch {
	case errors.Is(err, store.ErrInboxNotFound):
		problem(w, http.StatusNotFound, "no job expects this callback")
		return
	case err != nil:
		problem(w, http.StatusServiceUnavailable, "the callback could not be recorded now; retry")
		return
	}
	if wrote {
		c.notify(hash)
	}
	w.WriteHeader(http.StatusOK)
}

// notify wakes the run of this process waiting on the inbox hash, if any.
func (c *Callbacks) notify(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.wake[hash]; ok {
		close(ch)
		delete(c.wake, hash)
	}
}

// problem answers an RFC 9457 problem, as the rest of the API does.
func problem(w http.ResponseWriter, code int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(code), "status": code, "detail": detail})
}
