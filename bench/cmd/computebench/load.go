package main

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// load1 returns the 1-minute load average, or -1 when unknown. The machine
// is shared: a busy neighbour shows up here and explains a slow run.
func load1() float64 {
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

// othersCPU measures, over window, how much CPU the rest of the machine
// uses (everything but this process), in percent of one CPU.
func othersCPU(ctx context.Context, window time.Duration) float64 {
	a := sampleCPU()
	select {
	case <-ctx.Done():
	case <-time.After(window):
	}
	return cpuBetween(a, sampleCPU()).OtherPct
}

// waitQuiet waits up to limit for the rest of the machine to use less than
// threshold percent of one CPU, so a phase does not start while another
// job is using the CPUs. The load average is no help here: it still counts
// this program's own previous phase for minutes. It returns the last
// measurement and whether the machine was quiet.
func waitQuiet(ctx context.Context, threshold float64, limit time.Duration) (float64, bool) {
	deadline := time.Now().Add(limit)
	for {
		other := othersCPU(ctx, 2*time.Second)
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

// cpuSample is the machine's and this process's CPU time at one moment.
type cpuSample struct {
	at              time.Time
	machineBusy     float64 // seconds, all CPUs
	machineTotal    float64 // seconds, all CPUs
	processSeconds  float64
	processOK, mach bool
}

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
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
			s.machineBusy, s.machineTotal, s.mach = (total-idle)/100, total/100, true
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.processSeconds = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
		s.processOK = true
	}
	return s
}

// cpuUse is how busy the CPUs were between two samples, in percent of one
// CPU (so 200 means both CPUs of a 2-CPU machine were busy).
type cpuUse struct {
	MachinePct float64 `json:"machine_pct"`
	ProcessPct float64 `json:"process_pct"`
	// OtherPct is the rest of the machine: the PostgreSQL server, and
	// anything else running.
	OtherPct float64 `json:"other_pct"`
}

func cpuBetween(a, b cpuSample) cpuUse {
	wall := b.at.Sub(a.at).Seconds()
	if wall <= 0 || !a.mach || !b.mach || !a.processOK || !b.processOK {
		return cpuUse{}
	}
	u := cpuUse{
		MachinePct: 100 * (b.machineBusy - a.machineBusy) / wall,
		ProcessPct: 100 * (b.processSeconds - a.processSeconds) / wall,
	}
	u.OtherPct = max(0, u.MachinePct-u.ProcessPct)
	return u
}
