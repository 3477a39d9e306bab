package main

import (
	"context"
	"time"

	"github.com/computeserver/compute/bench/internal/cpustat"
)

// othersCPU measures, over window, how much CPU the rest of the machine
// uses (everything but this process), in percent of one CPU.
func othersCPU(ctx context.Context, window time.Duration) float64 {
	a := cpustat.Now()
	select {
	case <-ctx.Done():
	case <-time.After(window):
	}
	return cpustat.Between(a, cpustat.Now()).OtherPct
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
