package sqlstore

import (
	"context"
	"fmt"

	"github.com/computeserver/compute/internal/task"
)

// claimIndexOrder returns the index and the ORDER BY of a claim's pick of
// due tasks. The fair order is priority, then fair_seq (each tenant's
// turn: see fairSeqs), then run_at and created_at; WithFIFOClaim's is
// priority, then run_at and created_at. Either is read straight from its
// partial index of pending tasks, so a claim reads about as many rows as it
// claims, however many are pending.
func (s *Store) claimIndexOrder() (index, order string) {
	if s.fifo {
		return "tasks_claim", "priority DESC, run_at, created_at"
	}
	return "tasks_fair", "priority DESC, fair_seq, run_at, created_at"
}

// fairSeqs returns the fair_seq of each of tasks, which are about to be
// inserted in tx, in its order: the tasks of one tenant get consecutive
// numbers that start one after the tenant's last pending task, and no
// earlier than the head of the claim order (the pending task a claim
// would take first). A tenant's k-th waiting task therefore shares its
// number with the k-th waiting task of every other tenant, and the claim
// order interleaves the tenants: one with 10,000 tasks pending delays
// another's next task by about one task per tenant waiting, not by its
// backlog. A tenant arriving at an idle queue starts at the head's number,
// not at 0, so it does not jump a backlog it was not part of. Two creates
// of one tenant at once may take the same numbers: they tie, and run in
// created_at order. With WithFIFOClaim every number is 0 (unused).
func (s *Store) fairSeqs(ctx context.Context, tx *txn, tasks []*task.Task) ([]int64, error) {
	out := make([]int64, len(tasks))
	if s.fifo {
		return out, nil
	}
	next := map[string]int64{}
	for i, t := range tasks {
		n, ok := next[t.OriginTenantID]
		if !ok {
			var err error
			if n, err = s.fairStart(ctx, tx, t.OriginTenantID); err != nil {
				return nil, err
			}
		}
		out[i], next[t.OriginTenantID] = n, n+1
	}
	return out, nil
}

// fairStart is the fair_seq of the next task of tenant (fairSeqs).
func (s *Store) fairStart(ctx context.Context, tx *txn, tenant string) (int64, error) {
	var last, head *int64
	err := tx.QueryRowContext(ctx, `SELECT
		(SELECT fair_seq FROM tasks`+s.d.indexedBy("tasks_tenant_fair")+` WHERE status = 'pending' AND origin_tenant_id = $1
			ORDER BY fair_seq DESC LIMIT 1),
		(SELECT fair_seq FROM tasks`+s.d.indexedBy("tasks_fair")+` WHERE status = 'pending' AND run_at <= $2
			ORDER BY priority DESC, fair_seq LIMIT 1)`, tenant, task.Now()).Scan(&last, &head)
	if err != nil {
		return 0, fmt.Errorf("reading the turn of tenant %q: %w", tenant, err)
	}
	var n int64
	if last != nil {
		n = *last + 1
	}
	if head != nil && *head > n {
		n = *head
	}
	return n, nil
}
