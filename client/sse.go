package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	id    string // the last event id in force (may be inherited)
	event string // the event type ("message" when none was given)
	data  string
}

// maxSSELine bounds one line of a stream (an event's JSON body).
const maxSSELine = 16 << 20

// sseReader parses a text/event-stream as the HTML standard's "Server-sent
// events" section says: lines end in CRLF, LF or CR; "data" lines of one
// event are joined with LF; "id" sets the last event id (unless it holds
// NUL) and stays in force for later events; "retry" (digits only) sets the
// reconnection delay; lines starting with ':' are comments; a blank line
// dispatches the event, unless it has no data.
type sseReader struct {
	sc *bufio.Scanner
	// lastID is the last event id the stream set.
	lastID string
	// retry is the last valid "retry" value in milliseconds, -1 if none.
	retry int64
	// onLine is called for every line read, comments and keep-alives
	// included (the idle timer).
	onLine func()
	first  bool
}

func newSSEReader(r io.Reader) *sseReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxSSELine)
	sc.Split(scanSSELines)
	return &sseReader{sc: sc, retry: -1, first: true}
}

// scanSSELines splits at CRLF, LF or a lone CR.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	if i < 0 {
		if atEOF && len(data) > 0 {
			// A last line without its end is not a complete line: the
			// stream was cut, and an event it belonged to is discarded.
			return len(data), nil, errTruncated
		}
		return 0, nil, nil
	}
	if data[i] == '\r' {
		if i+1 == len(data) && !atEOF {
			return 0, nil, nil // a LF may follow
		}
		if i+1 < len(data) && data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
	}
	return i + 1, data[:i], nil
}

// errTruncated ends a stream whose last line has no end of line.
var errTruncated = errors.New("event stream cut in the middle of a line")

// next returns the next event; io.EOF when the stream ended cleanly
// between events (an event cut before its blank line is not returned).
func (r *sseReader) next() (sseEvent, error) {
	var (
		data    []byte
		hasData bool
		evType  string
	)
	for r.sc.Scan() {
		line := r.sc.Bytes()
		if r.onLine != nil {
			r.onLine()
		}
		if r.first {
			r.first = false
			line = bytes.TrimPrefix(line, []byte("\uFEFF"))
		}
		if len(line) == 0 {
			if !hasData {
				evType = ""
				continue
			}
			if evType == "" {
				evType = "message"
			}
			return sseEvent{id: r.lastID, event: evType, data: string(data)}, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		case "event":
			evType = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.ParseInt(string(value), 10, 64); err == nil && n >= 0 && isDigits(value) {
				r.retry = n
			}
		}
	}
	if err := r.sc.Err(); err != nil {
		return sseEvent{}, err
	}
	return sseEvent{}, io.EOF
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
