package comfyfake

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"
)

// maxHistory is execution.py MAXIMUM_HISTORY_SIZE (§1.3): beyond it the
// oldest entry is evicted.
const maxHistory = 10000

// state is what a ComfyUI process holds in memory and loses on restart
// (§1.3, §1.5): the queue, the history, the node cache, the prompt counter.
type state struct {
	number  int
	pending []*queueItem
	running *runningPrompt
	// history in insertion order; historyIndex maps a prompt id to it.
	history      []*historyEntry
	historyIndex map[string]*historyEntry
	cache        map[string]*cacheEntry
	// lastNode is server.py's last_node_id of the running prompt, replayed
	// as "executing" to its client when it reconnects (§1.6).
	lastNode *string
	wake     chan struct{}
}

func newState() *state {
	return &state{historyIndex: map[string]*historyEntry{}, cache: map[string]*cacheEntry{}, wake: make(chan struct{}, 1)}
}

// remaining is get_tasks_remaining: running plus pending.
func (st *state) remaining() int {
	n := len(st.pending)
	if st.running != nil {
		n++
	}
	return n
}

// queueNumber is a prompt's number: an int the server counted, or the
// client's explicit "number", which server.py turns into a float (§1.2).
type queueNumber struct {
	v        float64
	explicit bool
}

// MarshalJSON writes 7 for a counted number and 7.0 for an explicit one.
func (n queueNumber) MarshalJSON() ([]byte, error) {
	if n.explicit {
		return pyFloat(n.v).MarshalJSON()
	}
	return json.Marshal(int64(n.v))
}

// queueItem is ComfyUI's queue tuple [number, prompt_id, prompt,
// extra_data, outputs_to_execute] (§1.1 GET /queue).
type queueItem struct {
	number  queueNumber
	id      string
	graph   *graph
	extra   map[string]any
	outputs []string
}

// MarshalJSON writes the tuple as a JSON array.
func (it *queueItem) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{it.number, it.id, it.graph.raw, it.extra, it.outputs})
}

// clientID is extra_data.client_id, which routes the prompt's websocket
// messages (§1.2, §1.6); nil when absent or null.
func (it *queueItem) clientID() *string {
	v, ok := it.extra["client_id"]
	if !ok || v == nil {
		return nil
	}
	id := pyStr(v)
	return &id
}

// less is the heap order of PromptQueue: number first, then prompt id
// (Python compares the tuples).
func (it *queueItem) less(o *queueItem) bool {
	if it.number.v != o.number.v {
		return it.number.v < o.number.v
	}
	return it.id < o.id
}

// runningPrompt is the prompt the worker executes; closing interrupt is
// nodes.interrupt_processing().
type runningPrompt struct {
	item      *queueItem
	interrupt chan struct{}
	once      sync.Once
}

func (rp *runningPrompt) stop() { rp.once.Do(func() { close(rp.interrupt) }) }

// historyEntry is one /history value (§1.3).
type historyEntry struct {
	id        string
	item      *queueItem
	outputs   map[string]uiOutput
	meta      map[string]any
	success   bool
	messages  [][]any
	visibleAt time.Time
}

// MarshalJSON writes {"prompt","outputs","status","meta"}.
func (h *historyEntry) MarshalJSON() ([]byte, error) {
	status := "error"
	if h.success {
		status = "success"
	}
	return json.Marshal(map[string]any{
		"prompt":  h.item,
		"outputs": h.outputs,
		"status":  map[string]any{"status_str": status, "completed": h.success, "messages": h.messages},
		"meta":    h.meta,
	})
}

// cacheEntry is a node's cached result (the classic cache of execution.py).
type cacheEntry struct {
	outputs []value
	ui      uiOutput
}

// enqueue is PromptQueue.put: insert in heap order, broadcast status.
func (s *Server) enqueueLocked(it *queueItem) {
	st := s.st
	i := sort.Search(len(st.pending), func(i int) bool { return it.less(st.pending[i]) })
	st.pending = append(st.pending, nil)
	copy(st.pending[i+1:], st.pending[i:])
	st.pending[i] = it
	s.stats.MaxQueued = max(s.stats.MaxQueued, st.remaining())
	s.sendStatusLocked()
	select {
	case st.wake <- struct{}{}:
	default:
	}
	s.notifyLocked()
}

// deleteLocked is PromptQueue.delete_queue_item: only pending prompts.
func (s *Server) deleteLocked(id string) bool {
	for i, it := range s.st.pending {
		if it.id == id {
			if len(s.st.pending) == 1 {
				// The last pending item goes through wipe_queue, which
				// broadcasts a status of its own before the usual one.
				s.st.pending = nil
				s.sendStatusLocked()
			} else {
				s.st.pending = append(s.st.pending[:i], s.st.pending[i+1:]...)
			}
			s.sendStatusLocked()
			return true
		}
	}
	return false
}

// writeHistoryLocked is PromptQueue.task_done: replace or append the entry
// (a re-run id keeps its place, as a Python dict does), evicting the oldest
// beyond maxHistory.
func (s *Server) writeHistoryLocked(h *historyEntry) {
	st := s.st
	if old, ok := st.historyIndex[h.id]; ok {
		*old = *h
		return
	}
	if len(st.history) > maxHistory {
		delete(st.historyIndex, st.history[0].id)
		st.history = st.history[1:]
	}
	st.history = append(st.history, h)
	st.historyIndex[h.id] = h
}

// historyJSON is PromptQueue.get_history for all entries, in insertion
// order, with its max_items/offset arithmetic (§1.1 GET /history).
func (s *Server) historyJSON(now time.Time, maxItems, offset *int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var visible []*historyEntry
	if s.st != nil {
		for _, h := range s.st.history {
			if !now.Before(h.visibleAt) {
				visible = append(visible, h)
			}
		}
	}
	off := -1
	if offset != nil {
		off = *offset
	}
	if off < 0 && maxItems != nil {
		off = len(visible) - *maxItems
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	n := 0
	for i, h := range visible {
		if i < off {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		key, _ := json.Marshal(h.id)
		val, _ := json.Marshal(h)
		buf.Write(key)
		buf.WriteByte(':')
		buf.Write(val)
		n++
		if maxItems != nil && n >= *maxItems { // checked after adding, as get_history does
			break
		}
	}
	buf.WriteByte('}')
	return buf.Bytes()
}

// worker is main.py prompt_worker: one prompt at a time, lowest number
// first (§1.5, §1.7 "one worker executing FIFO by number").
func (s *Server) worker(ctx context.Context, gen int) {
	for {
		s.mu.Lock()
		if s.gen != gen || s.st == nil {
			s.mu.Unlock()
			return
		}
		st := s.st
		if len(st.pending) == 0 {
			wake := st.wake
			s.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			continue
		}
		// PromptQueue.get: pop the lowest, mark it running, broadcast status.
		it := st.pending[0]
		st.pending = st.pending[1:]
		rp := &runningPrompt{item: it, interrupt: make(chan struct{})}
		st.running = rp
		s.stats.Started = append(s.stats.Started, it.id)
		s.executing++
		s.stats.MaxConcurrent = max(s.stats.MaxConcurrent, s.executing)
		s.sendStatusLocked()
		s.notifyLocked()
		s.mu.Unlock()

		x := &execution{s: s, gen: gen, rp: rp, item: it, client: it.clientID(), done: ctx.Done()}
		x.run()
	}
}
