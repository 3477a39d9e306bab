// Package cpustat samples how much CPU time the machine and this process
// have used, so that a benchmark can say how busy the CPUs were during a
// run (the machine is shared, and the load generator runs in the same
// process as the server it measures).
package cpustat

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Load1 returns the 1-minute load average, or -1 when unknown. The machine
// is shared: a busy neighbour shows up here and explains a slow run.
func Load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// Sample is the machine's and this process's CPU time at one moment.
type Sample struct {
	At time.Time
	// MachineBusy and MachineTotal are seconds summed over all CPUs, from
	// /proc/stat; MachineOK says whether it was readable.
	MachineBusy, MachineTotal float64
	MachineOK                 bool
	// ProcessSeconds is this process's user and system time;
	// ProcessOK says whether it was readable.
	ProcessSeconds float64
	ProcessOK      bool
}

// Now samples the CPU times.
func Now() Sample {
	s := Sample{At: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) >= 8 && f[0] == "cpu" {
			var v [8]float64
			for i := range v {
				v[i], _ = strconv.ParseFloat(f[i+1], 64)
			}
			// user nice system idle iowait irq softirq steal, in ticks
			// of 1/100 s.
			idle := v[3] + v[4]
			total := v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]
			s.MachineBusy, s.MachineTotal, s.MachineOK = (total-idle)/100, total/100, true
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.ProcessSeconds = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		s.ProcessOK = true
	}
	return s
}

// Use is how busy the CPUs were between two samples, in percent of one
// CPU (so 200 means both CPUs of a 2-CPU machine were busy).
type Use struct {
	MachinePct float64 `json:"machine_pct"`
	ProcessPct float64 `json:"process_pct"`
	// OtherPct is the rest of the machine: the PostgreSQL server, and
	// anything else running.
	OtherPct float64 `json:"other_pct"`
}

// Between is the CPU use from a to b; zero when either was unreadable.
func Between(a, b Sample) Use {
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 || !a.MachineOK || !b.MachineOK || !a.ProcessOK || !b.ProcessOK {
		return Use{}
	}
	u := Use{
		MachinePct: 100 * (b.MachineBusy - a.MachineBusy) / wall,
		ProcessPct: 100 * (b.ProcessSeconds - a.ProcessSeconds) / wall,
	}
	u.OtherPct = max(0, u.MachinePct-u.ProcessPct)
	return u
}

// OthersCPU measures, over window, how much CPU the rest of the machine
// uses (everything but this process), in percent of one CPU.
func OthersCPU(ctx context.Context, window time.Duration) float64 {
	a := Now()
	select {
	case <-ctx.Done():
	case <-time.After(window):
	}
	return Between(a, Now()).OtherPct
}

// WaitQuiet waits up to limit for the rest of the machine to use less than
// threshold percent of one CPU, so a phase does not start while another
// job is using the CPUs. The load average is no help here: it still counts
// this program's own previous phase for minutes. It says why it waits
// through logf, and returns the last measurement and whether the machine
// was quiet.
func WaitQuiet(ctx context.Context, threshold float64, limit time.Duration, logf func(format string, a ...any)) (float64, bool) {
	deadline := time.Now().Add(limit)
	for {
		other := OthersCPU(ctx, 2*time.Second)
		if other < threshold {
			return other, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return other, false
		}
		logf("waiting for a quiet machine: the rest of the machine uses %.0f%% CPU (≥ %.0f%%)", other, threshold)
		select {
		case <-ctx.Done():
			return other, false
		case <-time.After(3 * time.Second):
		}
	}
}
