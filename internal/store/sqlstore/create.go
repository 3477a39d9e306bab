package sqlstore

import (
	"context"
	"fmt"
	"strings"

	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// CreateTasks inserts many new tasks (without idempotency keys) and their
// events in one transaction, for bulk loads (benchmarks, tests), with multi-row INSERTs: the base rows,
// each type's rows and the events, chunk by chunk, in one transaction.
func (s *Store) CreateTasks(ctx context.Context, recs []*store.Record) error {
	if len(recs) == 0 {
		return nil
	}
	for _, r := range recs {
		if r.Task.IdempotencyKey != "" {
			return fmt.Errorf("creating tasks in a batch: task %s has an idempotency key; use CreateTask", r.Task.ID)
		}
	}
	err := s.inTx(ctx, func(tx *txn) error {
		for start := 0; start < len(recs); start += maxBatch / 2 {
			if err := s.insertRecords(ctx, tx, recs[start:min(start+maxBatch/2, len(recs))]); err != nil {
				return err
			}
		}
		tx.notify(store.Notification{Kind: store.NotifyWake})
		return nil
	})
	if err != nil {
		return err
	}
	return nil
}

func (s *Store) insertBaseRows(ctx context.Context, tx *txn, recs []*store.Record) error {
	rows := make([]string, len(recs))
	var p params
	seqs, err := s.fairSeqs(ctx, tx, recordTasks(recs))
	if err != nil {
		return err
	}
	for i, r := range recs {
		if r.Task.Status != task.StatusPending {
			return fmt.Errorf("creating task %s: status is %s, want pending", r.Task.ID, r.Task.Status)
		}
		vals, err := baseValues(r.Task)
		if err != nil {
			return fmt.Errorf("encoding task: %w", err)
		}
		rows[i] = "(" + p.list(append(vals, seqs[i])...) + ")"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO tasks (`+insertColumns+`, fair_seq) VALUES `+strings.Join(rows, ", "), p.vals...); err != nil {
		return fmt.Errorf("inserting tasks: %w", err)
	}
	return nil
}

func (s *Store) insertTypeRows(ctx context.Context, tx *txn, def *registry.Definition, recs []*store.Record) error {
	cols := []string{"id"}
	for _, c := range def.Columns {
		cols = append(cols, quote(c.Name))
	}
	rows := make([]string, len(recs))
	p := params{vals: make([]any, 0, len(recs)*len(cols))}
	vals := make([]any, len(cols))
	for i, r := range recs {
		vals[0] = r.Task.ID.String()
		for j, c := range def.Columns {
			v, err := columnValue(r.Fields, c)
			if err != nil {
				return err
			}
			vals[j+1] = v
		}
		rows[i] = "(" + p.list(vals...) + ")"
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+quote(def.Table)+` (`+strings.Join(cols, ", ")+`) VALUES `+strings.Join(rows, ", "), p.vals...); err != nil {
		return fmt.Errorf("inserting %s rows: %w", def.Table, err)
	}
	return nil
}

// recordTasks returns the tasks of recs.
func recordTasks(recs []*store.Record) []*task.Task {
	out := make([]*task.Task, len(recs))
	for i, r := range recs {
		out[i] = r.Task
	}
	return out
}
