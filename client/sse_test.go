package client

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// TestSSEReader parses streams as the HTML standard's event-stream rules
// say (section "Interpreting an event stream").
func TestSSEReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		stream    string
		want      []sseEvent
		wantRetry int64
		wantErr   error
	}{
		{name: "one event", stream: "id: 1\nevent: echo_status_update\ndata: {\"a\":1}\n\n",
			want: []sseEvent{{id: "1", event: "echo_status_update", data: `{"a":1}`}}, wantRetry: -1},
		{name: "multi-line data joined with LF", stream: "data: first\ndata: second\ndata\n\n",
			want: []sseEvent{{event: "message", data: "first\nsecond\n"}}, wantRetry: -1},
		{name: "CRLF and lone CR line ends", stream: "id: 7\r\ndata: a\r\rid: 8\rdata: b\r\n\r\n",
			want: []sseEvent{{id: "7", event: "message", data: "a"}, {id: "8", event: "message", data: "b"}}, wantRetry: -1},
		{name: "comments and keep-alives are skipped", stream: ": keep-alive\n\n: hello\nid: 3\ndata: x\n\n: keep-alive\n\n",
			want: []sseEvent{{id: "3", event: "message", data: "x"}}, wantRetry: -1},
		{name: "the id stays in force", stream: "id: 5\ndata: a\n\ndata: b\n\n",
			want: []sseEvent{{id: "5", event: "message", data: "a"}, {id: "5", event: "message", data: "b"}}, wantRetry: -1},
		{name: "an id with NUL is ignored", stream: "id: 4\ndata: a\n\nid: 9\x00\ndata: b\n\n",
			want: []sseEvent{{id: "4", event: "message", data: "a"}, {id: "4", event: "message", data: "b"}}, wantRetry: -1},
		{name: "an event without data is not dispatched", stream: "id: 2\nevent: ping\n\ndata: after\n\n",
			want: []sseEvent{{id: "2", event: "message", data: "after"}}, wantRetry: -1},
		{name: "retry: digits only", stream: "retry: 1500\nretry: 2x\nretry: -4\ndata: a\n\n",
			want: []sseEvent{{event: "message", data: "a"}}, wantRetry: 1500},
		{name: "a leading BOM is dropped", stream: "\uFEFFid: 1\ndata: a\n\n",
			want: []sseEvent{{id: "1", event: "message", data: "a"}}, wantRetry: -1},
		{name: "only one space after the colon is dropped", stream: "data:  two spaces\ndata:none\n\n",
			want: []sseEvent{{event: "message", data: " two spaces\nnone"}}, wantRetry: -1},
		{name: "unknown fields are ignored", stream: "foo: bar\ndata: a\n\n",
			want: []sseEvent{{event: "message", data: "a"}}, wantRetry: -1},
		{name: "an event cut before its blank line is dropped", stream: "id: 1\ndata: a\n\nid: 2\ndata: b\n",
			want: []sseEvent{{id: "1", event: "message", data: "a"}}, wantRetry: -1},
		{name: "a line cut in the middle is an error", stream: "id: 1\ndata: a\n\nid: 2\ndata: {\"tru",
			want: []sseEvent{{id: "1", event: "message", data: "a"}}, wantRetry: -1, wantErr: errTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// One byte at a time, so every line end straddles a read.
			r := newSSEReader(&oneByte{r: strings.NewReader(tt.stream)})
			var got []sseEvent
			var err error
			for {
				var ev sseEvent
				if ev, err = r.next(); err != nil {
					break
				}
				got = append(got, ev)
			}
			if tt.wantErr == nil && !errors.Is(err, io.EOF) || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("ended with %v, want %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("events\n%q\nwant\n%q", got, tt.want)
			}
			if r.retry != tt.wantRetry {
				t.Errorf("retry %d, want %d", r.retry, tt.wantRetry)
			}
		})
	}
}

// oneByte reads one byte per Read.
type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}
