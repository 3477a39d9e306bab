package comfyui

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
)

// Slots accounts for the prompts each ComfyUI server runs, so a server
// never holds more prompts (running plus queued) than its slot count.
//
// The accounting must be as wide as the pool's users: LocalSlots counts
// within one process, which is exact for a single worker; SharedSlots
// keeps the count in the task store, for every worker process of a
// deployment, each slot held by a run (task and attempt) and free again
// when the run gives it back or its task stops executing at that attempt.
type Slots interface {
	// Acquire waits until one of servers has a free slot for executor and
	// takes it: the one with the most free slots, the earlier in the list
	// on a tie. It returns the
	// chosen server and the function that gives the slot back (safe to
	// call more than once). It fails only when ctx ends.
	Acquire(ctx context.Context, executor string, holder Holder, servers []Server) (Server, func(), error)
}

// Holder is the run that holds a slot: a task and its attempt.
type Holder struct {
	TaskID  uuid.UUID
	Attempt int
}

// LocalSlots is the process-local Slots: counts in memory, waiters woken
// when a slot is released. The zero value is not usable; call NewLocalSlots.
type LocalSlots struct {
	mu    sync.Mutex
	inUse map[string]int
	// freed is closed and replaced whenever a slot is released.
	freed chan struct{}
}

var _ Slots = (*LocalSlots)(nil)

// NewLocalSlots returns empty process-local slot accounting.
func NewLocalSlots() *LocalSlots {
	return &LocalSlots{inUse: map[string]int{}, freed: make(chan struct{})}
}

// Acquire implements Slots.
func (l *LocalSlots) Acquire(ctx context.Context, executor string, _ Holder, servers []Server) (Server, func(), error) {
	if len(servers) == 0 {
		return Server{}, nil, fmt.Errorf("acquiring a slot: no server to choose from")
	}
	for {
		l.mu.Lock()
		best, bestFree := -1, 0
		for i, s := range servers {
			if free := s.Slots - l.inUse[slotKey(executor, s.URL)]; free > bestFree {
				best, bestFree = i, free
			}
		}
		if best >= 0 {
			s := servers[best]
			key := slotKey(executor, s.URL)
			l.inUse[key]++
			l.mu.Unlock()
			var once sync.Once
			return s, func() { once.Do(func() { l.release(key) }) }, nil
		}
		freed := l.freed
		l.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return Server{}, nil, fmt.Errorf("waiting for a free slot: %w", ctx.Err())
		}
	}
}

// InUse returns the slots taken on server url by executor.
func (l *LocalSlots) InUse(executor, url string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inUse[slotKey(executor, url)]
}

func (l *LocalSlots) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inUse[key]--; l.inUse[key] <= 0 {
		delete(l.inUse, key)
	}
	close(l.freed)
	l.freed = make(chan struct{})
}

func slotKey(executor, url string) string { return executor + "\x00" + url }
