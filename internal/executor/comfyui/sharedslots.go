package comfyui

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/store"
)

// SharedSlots is the Slots of a deployment: the count lives in the task
// store (store.Slots), so no server holds more prompts than its slots
// whichever worker processes submit them. Acquire asks the store again,
// with growing pauses (50 ms to 1 s), while every slot is taken.
type SharedSlots struct {
	st store.Slots
}

var _ Slots = (*SharedSlots)(nil)

// NewSharedSlots returns the Slots kept in st.
func NewSharedSlots(st store.Slots) *SharedSlots { return &SharedSlots{st: st} }

// Acquire implements Slots.
func (s *SharedSlots) Acquire(ctx context.Context, executor string, holder Holder, servers []Server) (Server, func(), error) {
	if len(servers) == 0 {
		return Server{}, nil, fmt.Errorf("acquiring a slot: no server to choose from")
	}
	want := make([]store.SlotServer, len(servers))
	for i, sv := range servers {
		want[i] = store.SlotServer{URL: sv.URL, Slots: sv.Slots}
	}
	ref := store.RunRef{TaskID: holder.TaskID, Attempt: holder.Attempt}
	pause := 50 * time.Millisecond
	for {
		url, err := s.st.TakeSlot(ctx, executor, want, ref)
		if err != nil && ctx.Err() == nil {
			// The store failing is not the servers' fault: wait and ask
			// again, as for a full pool, until the run's context ends.
			url = ""
		}
		for _, sv := range servers {
			if url != "" && sv.URL == url {
				var once sync.Once
				release := func() {
					once.Do(func() {
						ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
						defer cancel()
						// A release that fails is not lost: the slot frees
						// itself when the run's task stops executing.
						_ = s.st.ReleaseSlot(ctx, executor, sv.URL, ref)
					})
				}
				return sv, release, nil
			}
		}
		select {
		case <-ctx.Done():
			return Server{}, nil, fmt.Errorf("waiting for a free slot: %w", ctx.Err())
		case <-time.After(pause/2 + rand.N(pause/2+1)):
		}
		pause = min(pause*2, time.Second)
	}
}

// holderOf is the run a job's slot is held by.
func holderOf(job *executor.Job) Holder {
	return Holder{TaskID: job.TaskID, Attempt: job.Attempt}
}
