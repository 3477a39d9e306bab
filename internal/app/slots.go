package app

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/computeserver/compute/internal/store"
)

// storeSlots is the store.Slots of the process's executors, which are
// built before the store opens: it answers from the store once set is
// called, and with an error before (no run can ask before the store is
// open).
type storeSlots struct {
	st atomic.Pointer[store.Slots]
}

var _ store.Slots = (*storeSlots)(nil)

var errSlotsNotOpen = errors.New("the store holding the executors' slots is not open yet")

// set hands the open store to the slots.
func (s *storeSlots) set(st store.Slots) { s.st.Store(&st) }

// TakeSlot implements store.Slots.
func (s *storeSlots) TakeSlot(ctx context.Context, executor string, servers []store.SlotServer, holder store.RunRef) (string, error) {
	st := s.st.Load()
	if st == nil {
		return "", errSlotsNotOpen
	}
	return (*st).TakeSlot(ctx, executor, servers, holder)
}

// ReleaseSlot implements store.Slots.
func (s *storeSlots) ReleaseSlot(ctx context.Context, executor, server string, holder store.RunRef) error {
	st := s.st.Load()
	if st == nil {
		return errSlotsNotOpen
	}
	return (*st).ReleaseSlot(ctx, executor, server, holder)
}
