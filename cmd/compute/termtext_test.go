package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/computeserver/compute/client"
)

// TestTermText: what a terminal acts on is removed, the text around it kept.
func TestTermText(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"plain text, tab\tkept, ünïcode", "plain text, tab\tkept, ünïcode"},
		{"\x1b]0;pwned\x07rendering", "rendering"},              // OSC ended by BEL: the window title
		{"\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\", "link"}, // OSC ended by ST: a hyperlink
		{"a\x1b[2J\x1b[1;1Hb", "ab"},                            // CSI: clear, move
		{"a\x1b[?1049hb", "ab"},                                 // CSI with a private parameter
		{"a\x1bcb", "ab"},                                       // RIS, a two-byte sequence
		{"a\x1b(Bb", "ab"},                                      // a charset designation
		{"a\x1bPq#0;2;0;0;0\x1b\\b", "ab"},                      // DCS (sixel)
		{"a\u009b31mb", "ab"},                                   // C1 CSI
		{"a\u009d0;pwned\u009cb", "ab"},                         // C1 OSC ended by C1 ST
		{"a\x1b]0;unterminated", "a"},                           // a string never ended swallows the rest
		{"a\x00b\x07c\x08d\x7fe\u0085f", "abcdef"},              // C0, DEL, C1
		{"line\nbreak\r\n", "line break  "},                     // line ends become spaces
		{"bad\xffbyte", "badbyte"},                              // invalid UTF-8
		{"trailing\x1b", "trailing"},
	} {
		if got := termText(c.in); got != c.want {
			t.Errorf("termText(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestProgressStripsServerText: a stage or an error message holding an
// escape sequence reaches neither the terminal nor a log; the progress
// line's own redraw sequence is kept.
func TestProgressStripsServerText(t *testing.T) {
	t.Parallel()
	for _, tty := range []bool{true, false} {
		var buf bytes.Buffer
		p := &progress{w: &buf, tty: tty}
		p.update(client.Event{EventType: "generation_progress_update", Status: client.StatusExecuting, Progress: 40,
			Metadata: map[string]any{"stage": "\x1b]0;pwned\x07rendering"}})
		p.update(client.Event{EventType: "generation_status_update", Status: client.StatusFailed, Progress: 40,
			ErrorMessage: "out of\x1b[31m ink\x9b2J"})
		p.done()
		out := buf.String()
		if tty {
			out = strings.ReplaceAll(out, "\x1b[K", "")
		}
		if strings.ContainsAny(out, "\x1b\x07\u009b") || strings.Contains(out, "pwned") {
			t.Errorf("tty %v: control text reached the output: %q", tty, buf.String())
		}
		if !strings.Contains(out, "40% executing: rendering") || !strings.Contains(out, "failed: out of ink") {
			t.Errorf("tty %v: the text itself is lost: %q", tty, buf.String())
		}
	}
}

// TestTableStripsServerText: a task whose error message holds escape
// sequences (echo's fail_with) is shown without them by get, list and
// watch, and as the API answered by -o json.
func TestTableStripsServerText(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	const evil = "out of ink\x1b]0;pwned\x07\x1b[2J"
	r := cli(t, base, "task", "create", "echo", "-f", "message=x", "-f", "fail_with="+evil, "--watch")
	if r.code != exitFailed {
		t.Fatalf("exit %d: %v\n%s", r.code, r.err, r.stderr)
	}
	if !strings.Contains(r.stderr, "failed: out of ink") {
		t.Errorf("watch lost the error:\n%q", r.stderr)
	}
	clean := func(what, out string) {
		t.Helper()
		// (fail_with is shown as JSON: its "\u001b]0;pwned" is escaped.)
		if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "ink]0;pwned") {
			t.Errorf("%s: control text reached the output:\n%q", what, out)
		}
		if !strings.Contains(out, "out of ink") {
			t.Errorf("%s: the error is lost:\n%q", what, out)
		}
	}
	clean("watch", r.stderr+r.stdout)
	list := cli(t, base, "task", "list")
	clean("list", list.stdout)
	id := strings.Fields(strings.Split(list.stdout, "\n")[1])[0]
	clean("get", cli(t, base, "task", "get", id).stdout)
	clean("result", cli(t, base, "task", "result", id).stdout)
	if j := cli(t, base, "task", "get", id, "-o", "json").task(t); j.ErrorMessage != evil {
		t.Errorf("-o json: error_message %q, want %q as the API answered", j.ErrorMessage, evil)
	}
}
