package api

import (
	"net/http"
	"strconv"
	"sync"
)

// streamLimits bounds, per API key and process, the event streams held
// open and the streams replaying the log from the database, so that one
// client's reconnect storm cannot take every connection of the database's
// read pool and the process's memory from the others; and, for every key
// together, the streams replaying at once, so that a storm spread over
// many keys cannot take the process's CPU from creates.
type streamLimits struct {
	maxStreams, maxReplays, maxReplaysAll int

	mu         sync.Mutex
	streams    map[string]int
	replays    map[string]int
	replaysAll int
}

func newStreamLimits(maxStreams, maxReplays, maxReplaysAll int) *streamLimits {
	return &streamLimits{maxStreams: maxStreams, maxReplays: maxReplays, maxReplaysAll: maxReplaysAll,
		streams: map[string]int{}, replays: map[string]int{}}
}

// acquire takes one of key's slots in counts (bounded by limit); release
// gives it back and is idempotent. ok is false when every slot is taken.
func (l *streamLimits) acquire(counts map[string]int, limit int, key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if counts[key] >= limit {
		return nil, false
	}
	counts[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if counts[key]--; counts[key] == 0 {
				delete(counts, key)
			}
		})
	}, true
}

// stream takes one of key's open-stream slots.
func (l *streamLimits) stream(key string) (func(), bool) {
	return l.acquire(l.streams, l.maxStreams, key)
}

// replay takes one of key's replay slots and one of the process's.
func (l *streamLimits) replay(key string) (func(), bool) {
	l.mu.Lock()
	if l.replaysAll >= l.maxReplaysAll {
		l.mu.Unlock()
		return nil, false
	}
	l.replaysAll++
	l.mu.Unlock()
	release, ok := l.acquire(l.replays, l.maxReplays, key)
	var once sync.Once
	all := func() {
		once.Do(func() {
			l.mu.Lock()
			l.replaysAll--
			l.mu.Unlock()
		})
	}
	if !ok {
		all()
		return nil, false
	}
	return func() { release(); all() }, true
}

// streamRetryAfter is the Retry-After, in seconds, of a stream refused for
// being over a limit.
const streamRetryAfter = 5

// writeTooMany answers 429 with Retry-After.
func writeTooMany(w http.ResponseWriter, detail string) {
	w.Header().Set("Retry-After", strconv.Itoa(streamRetryAfter))
	writeProblem(w, http.StatusTooManyRequests, detail, nil)
}

// open counts the event streams held open on this process.
func (l *streamLimits) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.streams {
		n += c
	}
	return n
}

// OpenStreams counts the event streams (SSE) this process holds open.
func (s *Server) OpenStreams() int { return s.streams.open() }
