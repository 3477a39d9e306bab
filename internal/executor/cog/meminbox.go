package cog

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/store"
)

// memInbox is store.Inbox in this process's memory (NewCallbacks).
type memInbox struct {
	now   func() time.Time
	mu    sync.Mutex
	boxes map[string]*memBox
}

var _ store.Inbox = (*memInbox)(nil)

// memBox is one inbox of a memInbox.
type memBox struct {
	auth  string
	seq   int64
	final bool
	body  []byte
	until time.Time
}

func newMemInbox(now func() time.Time) *memInbox {
	return &memInbox{now: now, boxes: map[string]*memBox{}}
}

// live returns the inbox hash unless it expired; mu is held.
func (m *memInbox) live(hash string) (*memBox, bool) {
	b, ok := m.boxes[hash]
	if !ok || b.until.Before(m.now()) {
		return nil, false
	}
	return b, true
}

// OpenInbox implements store.Inbox.
func (m *memInbox) OpenInbox(_ context.Context, hash, auth string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for h, b := range m.boxes {
		if b.until.Before(now) {
			delete(m.boxes, h)
		}
	}
	b, ok := m.boxes[hash]
	if !ok {
		b = &memBox{}
		m.boxes[hash] = b
	}
	b.auth, b.until = auth, until
	return nil
}

// ReadInbox implements store.Inbox.
func (m *memInbox) ReadInbox(_ context.Context, hash string, after int64) (store.InboxMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.live(hash)
	if !ok {
		return store.InboxMessage{}, store.ErrInboxNotFound
	}
	msg := store.InboxMessage{Seq: b.seq, Final: b.final, Auth: b.auth, ExpiresAt: b.until}
	if b.seq > after {
		msg.Body = slices.Clone(b.body)
	}
	return msg, nil
}

// PostInbox implements store.Inbox.
func (m *memInbox) PostInbox(_ context.Context, hash string, body []byte, final bool, until time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.live(hash)
	if !ok {
		return false, store.ErrInboxNotFound
	}
	if b.final {
		return false, nil
	}
	if body == nil {
		body = []byte{}
	}
	b.seq++
	b.body, b.final, b.until = slices.Clone(body), final, until
	return true, nil
}

// CloseInbox implements store.Inbox.
func (m *memInbox) CloseInbox(_ context.Context, hash string, until time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b, ok := m.boxes[hash]; ok {
		b.final, b.body, b.until = true, nil, until
	}
	return nil
}
