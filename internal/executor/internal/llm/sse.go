package llm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxEventBytes bounds one Server-Sent Event's data: a streamed image or a
// long answer may put megabytes on one line, far over bufio.Scanner's
// 64 KiB default token (reference §4.3).
const MaxEventBytes = 64 << 20

// ErrEventTooLong is returned for an event over MaxEventBytes.
var ErrEventTooLong = errors.New("a streamed event is over the size limit")

// ReadEvents reads a text/event-stream from r and hands each event's data
// to fn, until fn says stop, the stream ends (io.EOF is not an error) or
// it fails. It is lenient: a line may be of any length up to
// MaxEventBytes; "data:" with or without its space; comments, event,
// id and retry lines are skipped; an event ends at a blank line, or at a
// new data line when the data so far is already a whole JSON value (some
// OpenAI-compatible servers send no blank lines); CRLF line ends are
// accepted.
func ReadEvents(r io.Reader, fn func(data []byte) (stop bool, err error)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var data []byte
	pending := false
	flush := func() (bool, error) {
		if !pending {
			return false, nil
		}
		d := data
		data, pending = data[:0:0], false
		return fn(d)
	}
	for {
		line, err := readLine(br)
		if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
			if errors.Is(err, io.EOF) {
				_, ferr := flush()
				return ferr
			}
			return err
		}
		switch {
		case len(line) == 0:
			if stop, ferr := flush(); stop || ferr != nil {
				return ferr
			}
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("data:")):
			v := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
			if pending && json.Valid(data) {
				if stop, ferr := flush(); stop || ferr != nil {
					return ferr
				}
			}
			if pending {
				data = append(data, '\n')
			}
			if len(data)+len(v) > MaxEventBytes {
				return ErrEventTooLong
			}
			data, pending = append(data, v...), true
		}
		if errors.Is(err, io.EOF) {
			_, ferr := flush()
			return ferr
		}
	}
}

// readLine reads one line of any length up to MaxEventBytes, without its
// line end. At the end of the stream it returns what it read with io.EOF.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxEventBytes {
			return nil, ErrEventTooLong
		}
		switch {
		case err == nil:
			line = bytes.TrimSuffix(line[:len(line)-1], []byte("\r"))
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return bytes.TrimSuffix(line, []byte("\r")), io.EOF
		default:
			return nil, fmt.Errorf("reading the stream: %w", err)
		}
	}
}
