package hosted

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/computeserver/compute/internal/executor"
)

// Backoff spaces the polls of a job's status: from Min, growing by half
// up to Max, back to Min when the job moves.
type Backoff struct {
	// Min and Max bound the interval.
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the next interval.
func (b *Backoff) Next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.Min
	default:
		b.cur = min(b.Max, b.cur+b.cur/2)
	}
	return b.cur
}

// Reset starts again from Min.
func (b *Backoff) Reset() { b.cur = 0 }

// Pause waits d, or until ctx ends (then its error).
func Pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ParseDuration reads a duration setting ("500ms"); empty is def.
func ParseDuration(name, v string, def time.Duration) (time.Duration, error) {
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration such as 2s", name, v)
	}
	return d, nil
}

// Meter reports a job's progress, never going back and within 0–100.
type Meter struct {
	// R receives the reports.
	R    executor.Reporter
	last float64
	seen bool
}

// Report reports pct (clamped, and never below the last report) with
// stage.
func (m *Meter) Report(ctx context.Context, pct float64, stage string) error {
	pct = max(0, min(100, pct))
	if m.seen && pct < m.last {
		pct = m.last
	}
	m.last, m.seen = pct, true
	return m.R.Progress(ctx, pct, stage)
}

// fraction matches "12/28" and "45%" in log lines.
var fraction = regexp.MustCompile(`(\d+)\s*/\s*(\d+)|(\d{1,3})%`)

// LogFraction reads how far a run is from the last "N/M" or "P%" in its
// logs (tqdm bars, "step 3/28"): a fraction in 0–1, and whether any was
// found.
func LogFraction(logs string) (float64, bool) {
	all := fraction.FindAllStringSubmatch(logs, -1)
	for i := len(all) - 1; i >= 0; i-- {
		m := all[i]
		if m[3] != "" {
			if p, err := strconv.Atoi(m[3]); err == nil && p <= 100 {
				return float64(p) / 100, true
			}
			continue
		}
		n, err1 := strconv.Atoi(m[1])
		d, err2 := strconv.Atoi(m[2])
		if err1 == nil && err2 == nil && d > 0 && n <= d {
			return float64(n) / float64(d), true
		}
	}
	return 0, false
}

// Running reports a running job: 10–90 % as far as its logs tell
// (LogFraction), else 10 %.
func (m *Meter) Running(ctx context.Context, logs, stage string) error {
	pct := 10.0
	if f, ok := LogFraction(logs); ok {
		pct = 10 + 80*f
	}
	return m.Report(ctx, pct, stage)
}
