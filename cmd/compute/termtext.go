package main

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The server's text (a task's stage, error messages, names) reaches the
// terminal in table and progress output: a server, or whoever set a
// task's stage, could otherwise retitle the window, move the cursor or
// rewrite what was printed. -o json is left as the API answered.

// termText returns s without what a terminal would act on: escape
// sequences (ESC and what follows: CSI up to its final byte; OSC, DCS,
// SOS, PM and APC up to BEL or ST), the C0 controls but tab, DEL and the
// C1 controls (with the strings the C1 introducers open), and invalid
// UTF-8. A line break becomes a space, so that words stay apart.
func termText(s string) string {
	if isPlain(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\x1b':
			i = skipEscape(s, i+1)
			continue
		case r == 0x9b: // C1 CSI
			i = skipCSI(s, i+size)
			continue
		case r == 0x90 || r == 0x98 || r == 0x9d || r == 0x9e || r == 0x9f: // C1 DCS, SOS, OSC, PM, APC
			i = skipString(s, i+size)
			continue
		case r == '\n' || r == '\r' || r == '\v' || r == '\f':
			b.WriteByte(' ')
		case r == '\t':
			b.WriteByte('\t')
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
		case r == utf8.RuneError && size == 1:
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// isPlain reports whether s is valid UTF-8 with nothing termText removes.
func isPlain(s string) bool {
	for _, r := range s {
		if (r < 0x20 && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == utf8.RuneError {
			return false
		}
	}
	return true
}

// skipEscape returns the index after the escape sequence whose ESC ends
// just before i.
func skipEscape(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '[':
		return skipCSI(s, i+1)
	case ']', 'P', 'X', '^', '_':
		return skipString(s, i+1)
	}
	// nF: intermediates 0x20-0x2F, then one final byte.
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x2f {
		i++
	}
	if i < len(s) && s[i] >= 0x30 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipCSI returns the index after a control sequence's parameters,
// intermediates and final byte, starting at i.
func skipCSI(s string, i int) int {
	for i < len(s) && s[i] >= 0x20 && s[i] <= 0x3f {
		i++
	}
	if i < len(s) && s[i] >= 0x40 && s[i] <= 0x7e {
		i++
	}
	return i
}

// skipString returns the index after a control string starting at i: up
// to BEL, ESC \ or C1 ST, or the end of s when it is not terminated.
func skipString(s string, i int) int {
	for i < len(s) {
		switch {
		case s[i] == '\a':
			return i + 1
		case s[i] == '\x1b':
			if i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
			return i // an ESC ends the string and starts a sequence
		case strings.HasPrefix(s[i:], "\u009c"):
			return i + len("\u009c")
		}
		i++
	}
	return i
}

// cells writes one row of a tabwriter table: each value through termText,
// with its tabs as spaces (a tab would open a column), then a newline.
func cells(w io.Writer, values ...string) {
	for i, v := range values {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		io.WriteString(w, strings.ReplaceAll(termText(v), "\t", " "))
	}
	fmt.Fprintln(w)
}
