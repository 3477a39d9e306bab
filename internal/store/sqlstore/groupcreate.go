package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/registry"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// maxGroup bounds the creates written in one transaction.
const maxGroup = 128

type createReq struct {
	rec *store.Record
	res chan createRes
}

type createRes struct {
	rec     *store.Record
	created bool
	err     error
}

// errClosed is returned to calls made while the store closes.
var errClosed = errors.New("store closed")

// CreateTask implements store.Store. Calls that arrive while a write is in
// progress are written together in one transaction (group commit): one
// multi-row INSERT per table and the events (insertEvents), instead of one
// transaction each. A lone call is written at once, without waiting.
func (s *Store) CreateTask(ctx context.Context, rec *store.Record) (*store.Record, bool, error) {
	req := createReq{rec: rec, res: make(chan createRes, 1)}
	select {
	case s.creates <- req:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-s.done:
		return nil, false, errClosed
	}
	r := <-req.res
	return r.rec, r.created, r.err
}

// creator takes the waiting creates, up to maxGroup, and writes them.
func (s *Store) creator(ctx context.Context) {
	for {
		var first createReq
		select {
		case <-ctx.Done():
			return
		case first = <-s.creates:
		}
		batch := []createReq{first}
	drain:
		for len(batch) < maxGroup {
			select {
			case r := <-s.creates:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.createGroup(ctx, batch)
	}
}

// createGroup writes a group in one transaction; if that fails, each
// create is tried alone, so one bad create cannot fail the others.
func (s *Store) createGroup(ctx context.Context, batch []createReq) {
	results := make([]createRes, len(batch))
	write := func(reqs []createReq, res []createRes) error {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return s.inTx(ctx, func(tx *txn) error {
			for i := range res {
				res[i] = createRes{}
			}
			return s.createInTx(ctx, tx, reqs, res)
		})
	}
	if err := write(batch, results); err != nil {
		if len(batch) == 1 {
			results[0] = createRes{err: err}
		} else {
			for i := range batch {
				if err := write(batch[i:i+1], results[i:i+1]); err != nil {
					results[i] = createRes{err: err}
				}
			}
		}
	}
	for i, r := range batch {
		r.res <- results[i]
	}
}

// createInTx inserts the group's base rows (skipping those whose
// idempotency key is taken), their type rows and events. res[i] receives
// the outcome of reqs[i].
func (s *Store) createInTx(ctx context.Context, tx *txn, reqs []createReq, res []createRes) error {
	rows := make([]string, len(reqs))
	var p params
	tasks := make([]*task.Task, len(reqs))
	for i, r := range reqs {
		tasks[i] = r.rec.Task
	}
	seqs, err := s.fairSeqs(ctx, tx, tasks)
	if err != nil {
		return err
	}
	for i, r := range reqs {
		vals, err := baseValues(r.rec.Task)
		if err != nil {
			return fmt.Errorf("encoding task: %w", err)
		}
		rows[i] = "(" + p.list(append(vals, seqs[i])...) + ")"
	}
	q, err := tx.QueryContext(ctx, `INSERT INTO tasks (`+insertColumns+`, fair_seq) VALUES `+strings.Join(rows, ", ")+`
		ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id`, p.vals...)
	if err != nil {
		return fmt.Errorf("inserting tasks: %w", err)
	}
	inserted := map[string]bool{}
	for q.Next() {
		var id string
		if err := q.Scan(&id); err != nil {
			q.Close()
			return fmt.Errorf("inserting tasks: %w", err)
		}
		inserted[normalizeUUID(id)] = true
	}
	q.Close()
	if err := q.Err(); err != nil {
		return fmt.Errorf("inserting tasks: %w", err)
	}
	byType := map[*registry.Definition][]*store.Record{}
	var (
		order []*registry.Definition
		evs   []event.Event
	)
	for i, r := range reqs {
		t := r.rec.Task
		if !inserted[t.ID.String()] {
			// The idempotency key is taken: answer with the task that has it.
			existing, err := s.getBy(ctx, tx, "idempotency_key = $1", t.IdempotencyKey)
			if err != nil {
				return fmt.Errorf("loading task for idempotency key: %w", err)
			}
			if existing.Task.RequestHash != t.RequestHash {
				res[i] = createRes{err: task.ErrIdempotencyMismatch}
			} else {
				res[i] = createRes{rec: existing}
			}
			continue
		}
		res[i] = createRes{rec: r.rec, created: true}
		if _, ok := byType[r.rec.Def]; !ok {
			order = append(order, r.rec.Def)
		}
		byType[r.rec.Def] = append(byType[r.rec.Def], r.rec)
		evs = append(evs, event.New(t, event.KindStatus, t.CreatedAt))
	}
	for _, def := range order {
		if err := s.insertTypeRows(ctx, tx, def, byType[def]); err != nil {
			return err
		}
	}
	if len(evs) == 0 {
		return nil
	}
	if _, err := s.insertEvents(ctx, tx, evs); err != nil {
		return err
	}
	tx.notify(store.Notification{Kind: store.NotifyWake})
	return nil
}
