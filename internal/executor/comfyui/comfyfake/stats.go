package comfyfake

import (
	"context"
	"maps"
	"slices"
	"time"
)

// Stats is what the fake recorded, for tests to assert on. It survives
// Kill and Restart (it is the test's record, not ComfyUI's state).
type Stats struct {
	// Submissions counts accepted POST /prompt calls per prompt_id; more
	// than 1 means the same prompt was queued again.
	Submissions map[string]int `json:"submissions"`
	// Rejected counts POST /prompt calls answered 400 or 500.
	Rejected int `json:"rejected"`
	// Started lists prompt ids in the order the worker began executing
	// them; Finished those whose history entry was written.
	Started  []string `json:"started"`
	Finished []string `json:"finished"`
	// Running is the prompt executing now ("" when idle), Pending the
	// queued ones in execution order.
	Running string   `json:"running"`
	Pending []string `json:"pending"`
	// Clients are the clientIds with an open websocket, sorted.
	Clients []string `json:"clients"`
	// MaxConcurrent is the largest number of prompts ever executing at the
	// same time (ComfyUI's single worker makes it 1, §1.7).
	MaxConcurrent int `json:"max_concurrent"`
	// MaxQueued is the largest number of prompts ever in the server at once,
	// running plus pending: what a client that respects a server's slot
	// count keeps at or below the slots.
	MaxQueued int `json:"max_queued"`
	// Interrupts are the POST /interrupt calls received.
	Interrupts []Interrupt `json:"interrupts"`
	// Deletes are the ids POST /queue {"delete"} asked to remove; Clears
	// counts {"clear":true}.
	Deletes []Delete `json:"deletes"`
	Clears  int      `json:"clears"`
	// Uploads are the POST /upload/image calls that stored or reused a file.
	Uploads []Upload `json:"uploads"`
	// Restarts counts Restart calls.
	Restarts int `json:"restarts"`
}

// Interrupt is one POST /interrupt.
type Interrupt struct {
	// PromptID is the body's prompt_id; "" for a global interrupt.
	PromptID string `json:"prompt_id"`
	// Running is the prompt executing when it arrived ("" when idle).
	Running string `json:"running"`
	// Applied says whether it interrupted Running.
	Applied bool `json:"applied"`
	// At is when it arrived.
	At time.Time `json:"at"`
}

// Delete is one id of a POST /queue {"delete":[…]}.
type Delete struct {
	PromptID string `json:"prompt_id"`
	// Removed says whether the id was pending (only pending prompts can be
	// deleted, §1.1).
	Removed bool `json:"removed"`
	// At is when it arrived.
	At time.Time `json:"at"`
}

// Upload is one accepted POST /upload/image.
type Upload struct {
	// Filename is the name the client sent, Name the name the server
	// chose (§1.7 "upload name collision").
	Filename  string `json:"filename"`
	Name      string `json:"name"`
	Subfolder string `json:"subfolder"`
	Type      string `json:"type"`
	// Size is the file's length in bytes.
	Size int `json:"size"`
	// Reused says an identical file already had the name.
	Reused bool `json:"reused"`
	// At is when it arrived.
	At time.Time `json:"at"`
}

func newStats() Stats { return Stats{Submissions: map[string]int{}} }

func (st Stats) clone() Stats {
	st.Submissions = maps.Clone(st.Submissions)
	st.Started = slices.Clone(st.Started)
	st.Finished = slices.Clone(st.Finished)
	st.Pending = slices.Clone(st.Pending)
	st.Interrupts = slices.Clone(st.Interrupts)
	st.Deletes = slices.Clone(st.Deletes)
	st.Uploads = slices.Clone(st.Uploads)
	return st
}

// Stats returns a copy of what was recorded so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Server) statsLocked() Stats {
	st := s.stats.clone()
	st.Running, st.Pending = "", nil
	st.Clients = slices.Sorted(maps.Keys(s.sockets))
	if s.st != nil {
		if s.st.running != nil {
			st.Running = s.st.running.item.id
		}
		for _, it := range s.st.pending {
			st.Pending = append(st.Pending, it.id)
		}
	}
	return st
}

// Wait blocks until cond holds for the recorded Stats or ctx ends; cond is
// evaluated after every change, so tests need no sleeps.
func (s *Server) Wait(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		ok := cond(s.statsLocked())
		changed := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// notifyLocked wakes Wait callers; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
