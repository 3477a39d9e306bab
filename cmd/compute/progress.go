package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/computeserver/compute/client"
)

// progressWidth is the number of cells of the bar.
const progressWidth = 30

// progress shows a task's events as they come: on a terminal one line
// redrawn in place (a bar, carriage returns), elsewhere (a pipe, a file, a
// CI log) one line per change of status, progress or stage.
type progress struct {
	w   io.Writer
	tty bool
	// last is the line last shown; drawn tells whether a TTY line is open.
	last  string
	drawn bool
}

// newProgress writes to w, redrawing in place when w is a terminal.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))}
}

// line is the text of one state: "[#####…] 40% executing: rendering".
func (p *progress) line(status client.Status, pct float64, stage string) string {
	pct = min(max(pct, 0), 100)
	var b strings.Builder
	if p.tty {
		full := int(pct / 100 * progressWidth)
		b.WriteString("[")
		b.WriteString(strings.Repeat("#", full))
		b.WriteString(strings.Repeat(".", progressWidth-full))
		b.WriteString("] ")
	}
	fmt.Fprintf(&b, "%3.0f%% %s", pct, status)
	if stage != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(stage, 120))
	}
	return b.String()
}

// update shows an event if it changes what is shown.
func (p *progress) update(ev client.Event) {
	text := p.line(ev.Status, ev.Progress, ev.Stage())
	if ev.Status == client.StatusFailed && ev.ErrorMessage != "" {
		text += ": " + oneLine(ev.ErrorMessage, 120)
	}
	if text == p.last {
		return
	}
	p.last = text
	if p.tty {
		// Back to the line's start, the new text, and clear what is left
		// of a longer previous line.
		fmt.Fprintf(p.w, "\r%s\x1b[K", text)
		p.drawn = true
		return
	}
	fmt.Fprintln(p.w, text)
}

// done ends a TTY line.
func (p *progress) done() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
