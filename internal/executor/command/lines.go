package command

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
)

// The line format a process-mode process speaks on its stdout or stderr
// (both are read, in the order written). Every other line is a log line.
//
//	PROGRESS <percent> [stage text]   percent 0–100 (clamped; never goes back)
//	CHECKPOINT <path>                  a file to keep as the task's last checkpoint
//	RESULT <json object>               merged into the task's result data
const (
	linePrefixProgress   = "PROGRESS "
	linePrefixCheckpoint = "CHECKPOINT "
	linePrefixResult     = "RESULT "
)

// maxLine bounds a line kept; the rest of a longer line is dropped.
const maxLine = 4096

// eventKind is what a protocol line reports.
type eventKind int

const (
	evProgress eventKind = iota
	evCheckpoint
	evResult
)

// event is one protocol line (or server reply) for Wait to act on.
type event struct {
	kind  eventKind
	pct   float64
	stage string
	path  string
	data  map[string]any
}

// parseLine returns the event of a protocol line; ok is false for a log
// line (a malformed protocol line is a log line too).
func parseLine(line string) (ev event, ok bool) {
	switch {
	case strings.HasPrefix(line, linePrefixProgress):
		rest := strings.TrimSpace(line[len(linePrefixProgress):])
		num, stage, _ := strings.Cut(rest, " ")
		pct, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(pct) {
			return ev, false
		}
		return event{kind: evProgress, pct: clamp(pct), stage: strings.TrimSpace(stage)}, true
	case strings.HasPrefix(line, linePrefixCheckpoint):
		p := strings.TrimSpace(line[len(linePrefixCheckpoint):])
		return event{kind: evCheckpoint, path: p}, p != ""
	case strings.HasPrefix(line, linePrefixResult):
		var data map[string]any
		if json.Unmarshal([]byte(line[len(linePrefixResult):]), &data) != nil {
			return ev, false
		}
		return event{kind: evResult, data: data}, true
	}
	return ev, false
}

func clamp(p float64) float64 { return max(0, min(100, p)) }

// readLines calls fn with every line of r (without its newline, cut at
// maxLine) until r ends.
func readLines(r io.Reader, fn func(line string)) {
	br := bufio.NewReaderSize(r, maxLine)
	var cur []byte
	long := false
	for {
		chunk, isPrefix, err := br.ReadLine()
		if len(chunk) > 0 && !long {
			room := maxLine - len(cur)
			if len(chunk) > room {
				chunk, long = chunk[:room], true
			}
			cur = append(cur, chunk...)
		}
		if err != nil {
			if len(cur) > 0 {
				fn(string(cur))
			}
			return
		}
		if !isPrefix {
			fn(string(cur))
			cur, long = cur[:0], false
		}
	}
}

// tail keeps the last lines of a process's log output.
type tail struct {
	mu    sync.Mutex
	lines []string
	max   int
}

func newTail(n int) *tail { return &tail{max: n} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.max <= 0 {
		return
	}
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

// String returns the kept lines, or "" when there are none.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// withTail appends the log tail to a failure message.
func withTail(msg string, t *tail) string {
	if s := t.String(); s != "" {
		return msg + "; last output:\n" + s
	}
	return msg
}
