package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

var _ store.Slots = (*Store)(nil)

// slotFree is the condition of a free slot row s: no run holds it, or its
// task is no longer executing at the attempt that took it.
const slotFree = `(s.task_id IS NULL OR NOT EXISTS (SELECT 1 FROM tasks t
	WHERE t.id = s.task_id AND t.status = 'executing' AND t.attempt = s.attempt))`

// maxSlotTries bounds how often TakeSlot picks again in one call when
// another process took the slot it picked first.
const maxSlotTries = 3

// TakeSlot implements store.Slots; it takes no free slot of a drained
// server (store.HoldServer), whose taken slots are given back as their runs
// end. It makes the servers' slot rows if
// they are missing, reads which are free, and takes one with an UPDATE
// conditional on it still being free: of two processes that picked the
// same slot, the second writes nothing and picks again.
func (s *Store) TakeSlot(ctx context.Context, executor string, servers []store.SlotServer, holder store.RunRef) (string, error) {
	if len(servers) == 0 {
		return "", fmt.Errorf("taking a slot of %s: no server to choose from", executor)
	}
	held, err := s.heldServers(ctx)
	if err != nil {
		return "", err
	}
	var got string
	err = s.inTx(ctx, func(tx *txn) error {
		got = ""
		if err := s.makeSlots(ctx, tx, executor, servers); err != nil {
			return err
		}
		for range maxSlotTries {
			server, slot, mine, err := s.pickSlot(ctx, tx, executor, servers, holder, held)
			if err != nil || server == "" || mine {
				got = server
				return err
			}
			var p params
			res, err := tx.ExecContext(ctx, `UPDATE executor_slots AS s SET task_id = `+p.add(holder.TaskID.String())+`,
				attempt = `+p.add(holder.Attempt)+`, taken_at = `+p.add(task.Now())+`
				WHERE s.executor = `+p.add(executor)+` AND s.server = `+p.add(server)+` AND s.slot = `+p.add(slot)+`
				AND `+slotFree, p.vals...)
			if err != nil {
				return fmt.Errorf("taking a slot: %w", err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("taking a slot: %w", err)
			} else if n == 1 {
				got = server
				return nil
			}
		}
		return nil
	})
	return got, err
}

// makeSlots inserts the slot rows of servers that do not exist yet.
func (s *Store) makeSlots(ctx context.Context, tx *txn, executor string, servers []store.SlotServer) error {
	var (
		p    params
		rows []string
	)
	for _, sv := range servers {
		for i := range sv.Slots {
			rows = append(rows, `(`+p.add(executor)+`, `+p.add(sv.URL)+`, `+p.add(i)+`)`)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO executor_slots (executor, server, slot) VALUES `+
		strings.Join(rows, ", ")+` ON CONFLICT DO NOTHING`, p.vals...)
	if err != nil {
		return fmt.Errorf("making slot rows: %w", err)
	}
	return nil
}

// pickSlot reads the slots of servers and returns the one to take: the
// holder's own (mine), else a free slot of the server with the most free
// slots (the earlier in servers on a tie) that is not drained (held);
// server is "" when none is free. A holder's own slot on a drained server
// is still its own: a run that re-attaches to its job there keeps it.
func (s *Store) pickSlot(ctx context.Context, tx *txn, executor string, servers []store.SlotServer, holder store.RunRef, held map[string]bool) (server string, slot int, mine bool, err error) {
	urls := make([]string, len(servers))
	for i, sv := range servers {
		urls[i] = sv.URL
	}
	var p params
	rows, err := tx.QueryContext(ctx, `SELECT s.server, s.slot,
		s.task_id IS NOT NULL AND s.task_id = `+p.add(holder.TaskID.String())+` AND s.attempt = `+p.add(holder.Attempt)+`,
		`+slotFree+` FROM executor_slots s WHERE s.executor = `+p.add(executor)+` AND `+inList(&p, "s.server", urls)+`
		ORDER BY s.server, s.slot`, p.vals...)
	if err != nil {
		return "", 0, false, fmt.Errorf("reading slots: %w", err)
	}
	defer rows.Close()
	free := map[string][]int{}
	for rows.Next() {
		var (
			srv        string
			n          int
			own, empty bool
		)
		if err := rows.Scan(&srv, &n, &own, &empty); err != nil {
			return "", 0, false, fmt.Errorf("reading slots: %w", err)
		}
		i := slices.IndexFunc(servers, func(sv store.SlotServer) bool { return sv.URL == srv })
		switch {
		case own:
			return srv, n, true, nil
		case empty && i >= 0 && n < servers[i].Slots && !held[srv]:
			free[srv] = append(free[srv], n)
		}
	}
	if err := rows.Err(); err != nil {
		return "", 0, false, fmt.Errorf("reading slots: %w", err)
	}
	best := -1
	for i, sv := range servers {
		if len(free[sv.URL]) > 0 && (best < 0 || len(free[sv.URL]) > len(free[servers[best].URL])) {
			best = i
		}
	}
	if best < 0 {
		return "", 0, false, nil
	}
	return servers[best].URL, free[servers[best].URL][0], false, nil
}

// ReleaseSlot implements store.Slots.
func (s *Store) ReleaseSlot(ctx context.Context, executor, server string, holder store.RunRef) error {
	var p params
	_, err := s.w.ExecContext(ctx, `UPDATE executor_slots SET task_id = NULL, attempt = 0, taken_at = NULL
		WHERE executor = `+p.add(executor)+` AND server = `+p.add(server)+`
		AND task_id = `+p.add(holder.TaskID.String())+` AND attempt = `+p.add(holder.Attempt), p.vals...)
	if err != nil {
		return fmt.Errorf("releasing a slot: %w", classify(err))
	}
	return nil
}
