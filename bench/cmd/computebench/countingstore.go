package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/store/sqlstore"
)

// countingStore wraps the real store to observe the engine from outside it:
// it counts completions written (FinishRuns returns after the commit, so a
// counted completion is durable) and closes done when target is reached, and
// it records how the engine batches its claims and completions.
type countingStore struct {
	*sqlstore.Store

	target    int64
	done      chan struct{}
	closeDone sync.Once

	completed atomic.Int64

	claimCalls, claimEmpty, claimed atomic.Int64
	claimNanos                      atomic.Int64
	finishCalls, finished           atomic.Int64
	finishNanos                     atomic.Int64
}

var _ store.Store = (*countingStore)(nil)

func newCountingStore(s *sqlstore.Store, target int) *countingStore {
	return &countingStore{Store: s, target: int64(target), done: make(chan struct{})}
}

// ClaimTasks implements store.Store.
func (c *countingStore) ClaimTasks(ctx context.Context, p store.ClaimParams) ([]*store.Record, error) {
	start := time.Now()
	recs, err := c.Store.ClaimTasks(ctx, p)
	c.claimNanos.Add(int64(time.Since(start)))
	c.claimCalls.Add(1)
	c.claimed.Add(int64(len(recs)))
	if len(recs) == 0 {
		c.claimEmpty.Add(1)
	}
	return recs, err
}

// FinishRuns implements store.Store.
func (c *countingStore) FinishRuns(ctx context.Context, changes []store.StatusChange) ([]error, error) {
	start := time.Now()
	errs, err := c.Store.FinishRuns(ctx, changes)
	c.finishNanos.Add(int64(time.Since(start)))
	c.finishCalls.Add(1)
	if err != nil {
		return errs, err
	}
	var ok int64
	for _, e := range errs {
		if e == nil {
			ok++
		}
	}
	c.finished.Add(int64(len(changes)))
	if c.completed.Add(ok) >= c.target {
		c.closeDone.Do(func() { close(c.done) })
	}
	return errs, err
}

// engineStats is what countingStore saw, for the report.
type engineStats struct {
	ClaimCalls     int64   `json:"claim_calls"`
	ClaimEmpty     int64   `json:"claim_empty"`
	AvgClaimBatch  float64 `json:"avg_claim_batch"`
	AvgClaimMS     float64 `json:"avg_claim_ms"`
	ClaimBusyPct   float64 `json:"claim_busy_pct"`
	FinishCalls    int64   `json:"finish_calls"`
	AvgFinishBatch float64 `json:"avg_finish_batch"`
	AvgFinishMS    float64 `json:"avg_finish_ms"`
	FinishBusyPct  float64 `json:"finish_busy_pct"`
}

func (c *countingStore) stats(elapsed time.Duration) engineStats {
	s := engineStats{ClaimCalls: c.claimCalls.Load(), ClaimEmpty: c.claimEmpty.Load(), FinishCalls: c.finishCalls.Load()}
	if s.ClaimCalls > 0 {
		nonEmpty := max(s.ClaimCalls-s.ClaimEmpty, 1)
		s.AvgClaimBatch = float64(c.claimed.Load()) / float64(nonEmpty)
		s.AvgClaimMS = float64(c.claimNanos.Load()) / float64(s.ClaimCalls) / 1e6
	}
	if s.FinishCalls > 0 {
		s.AvgFinishBatch = float64(c.finished.Load()) / float64(s.FinishCalls)
		s.AvgFinishMS = float64(c.finishNanos.Load()) / float64(s.FinishCalls) / 1e6
	}
	if elapsed > 0 {
		s.ClaimBusyPct = 100 * float64(c.claimNanos.Load()) / float64(elapsed)
		s.FinishBusyPct = 100 * float64(c.finishNanos.Load()) / float64(elapsed)
	}
	return s
}
