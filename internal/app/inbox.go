package app

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/computeserver/compute/internal/store"
)

// storeInbox is the store.Inbox of the process's Cog callbacks, which are
// built with the executors, before the store opens: it answers from the
// store once set is called, and with an error before (no webhook is
// served and no run waits before the store is open).
type storeInbox struct {
	st atomic.Pointer[store.Inbox]
}

var _ store.Inbox = (*storeInbox)(nil)

var errInboxNotOpen = errors.New("the store holding the executors' inboxes is not open yet")

// set hands the open store to the inboxes.
func (s *storeInbox) set(st store.Inbox) { s.st.Store(&st) }

// OpenInbox implements store.Inbox.
func (s *storeInbox) OpenInbox(ctx context.Context, hash, auth string, until time.Time) error {
	st := s.st.Load()
	if st == nil {
		return errInboxNotOpen
	}
	return (*st).OpenInbox(ctx, hash, auth, until)
}

// ReadInbox implements store.Inbox.
func (s *storeInbox) ReadInbox(ctx context.Context, hash string, after int64) (store.InboxMessage, error) {
	st := s.st.Load()
	if st == nil {
		return store.InboxMessage{}, errInboxNotOpen
	}
	return (*st).ReadInbox(ctx, hash, after)
}

// PostInbox implements store.Inbox.
func (s *storeInbox) PostInbox(ctx context.Context, hash string, body []byte, final bool, until time.Time) (bool, error) {
	st := s.st.Load()
	if st == nil {
		return false, errInboxNotOpen
	}
	return (*st).PostInbox(ctx, hash, body, final, until)
}

// CloseInbox implements store.Inbox.
func (s *storeInbox) CloseInbox(ctx context.Context, hash string, until time.Time) error {
	st := s.st.Load()
	if st == nil {
		return errInboxNotOpen
	}
	return (*st).CloseInbox(ctx, hash, until)
}
