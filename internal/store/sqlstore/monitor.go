package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

var _ store.Monitor = (*Store)(nil)

// QueueStats implements store.Monitor with two statements: the live
// tasks by queue and status (the pending ones from tasks_pending_queue,
// the executing ones from tasks_executing_queue), and the tasks finished
// within the longest window (a range of tasks_finished_queue).
func (s *Store) QueueStats(ctx context.Context, now time.Time) ([]store.QueueStats, error) {
	byQueue := map[string]*store.QueueStats{}
	get := func(q string) *store.QueueStats {
		qs := byQueue[q]
		if qs == nil {
			qs = &store.QueueStats{Queue: q}
			byQueue[q] = qs
		}
		return qs
	}
	// SQLite would pick tasks_status_created and sort: name the indexes.
	rows, err := s.r.QueryContext(ctx, `SELECT queue_name, COUNT(*), MIN(created_at) FROM tasks`+s.d.indexedBy("tasks_pending_queue")+`
		WHERE status = 'pending' GROUP BY queue_name
		UNION ALL SELECT queue_name, -COUNT(*), NULL FROM tasks`+s.d.indexedBy("tasks_executing_queue")+`
		WHERE status = 'executing' GROUP BY queue_name`)
	if err != nil {
		return nil, fmt.Errorf("counting queues: %w", classify(err))
	}
	for rows.Next() {
		var (
			q      string
			n      int
			oldest aggTime
		)
		if err := rows.Scan(&q, &n, &oldest); err != nil {
			rows.Close()
			return nil, fmt.Errorf("counting queues: %w", err)
		}
		qs := get(q)
		if n < 0 {
			qs.Executing = -n
			continue
		}
		qs.Pending = n
		qs.OldestPending = oldest.t
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting queues: %w", err)
	}

	var cuts [3]time.Time
	for i, w := range store.Windows {
		cuts[i] = dbTime(now.Add(-w))
	}
	rows, err = s.r.QueryContext(ctx, `SELECT queue_name, status,
		SUM(CASE WHEN completed_at >= $1 THEN 1 ELSE 0 END), SUM(CASE WHEN completed_at >= $2 THEN 1 ELSE 0 END), COUNT(*)
		FROM tasks`+s.d.indexedBy("tasks_finished_queue")+`
		WHERE completed_at IS NOT NULL AND completed_at >= $3 AND status IN ('completed', 'failed') GROUP BY queue_name, status`,
		cuts[0], cuts[1], cuts[2])
	if err != nil {
		return nil, fmt.Errorf("counting finished tasks: %w", classify(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			q, status string
			n         [3]int
		)
		if err := rows.Scan(&q, &status, &n[0], &n[1], &n[2]); err != nil {
			return nil, fmt.Errorf("counting finished tasks: %w", err)
		}
		qs := get(q)
		if status == "completed" {
			qs.Completed = n
		} else {
			qs.Failed = n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counting finished tasks: %w", err)
	}
	out := make([]store.QueueStats, 0, len(byQueue))
	for _, qs := range byQueue {
		out = append(out, *qs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Queue < out[j].Queue })
	return out, nil
}

// TenantUsage implements store.Monitor: one grouped pass over the tasks
// (of one tenant through tasks_tenant_status_created).
func (s *Store) TenantUsage(ctx context.Context, scope store.Scope) ([]store.TenantUsage, error) {
	q := `SELECT origin_tenant_id, status, COUNT(*),
		COALESCE(SUM(CASE WHEN started_at IS NOT NULL AND completed_at IS NOT NULL THEN ` +
		fmt.Sprintf(s.d.seconds, "started_at", "completed_at") + ` ELSE 0 END), 0),
		COALESCE(SUM(provider_seconds), 0), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0)
		FROM tasks`
	var args []any
	if !scope.Admin {
		q += ` WHERE origin_tenant_id = $1`
		args = append(args, scope.TenantID)
	}
	q += ` GROUP BY origin_tenant_id, status ORDER BY origin_tenant_id, status`
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("reading tenant usage: %w", classify(err))
	}
	defer rows.Close()
	var out []store.TenantUsage
	for rows.Next() {
		var (
			tenant, status string
			n              int
			secs           float64
			used           task.Usage
		)
		if err := rows.Scan(&tenant, &status, &n, &secs, &used.ProviderSeconds, &used.InputTokens, &used.OutputTokens); err != nil {
			return nil, fmt.Errorf("reading tenant usage: %w", err)
		}
		if len(out) == 0 || out[len(out)-1].TenantID != tenant {
			out = append(out, store.TenantUsage{TenantID: tenant, ByStatus: map[string]int{}})
		}
		u := &out[len(out)-1]
		u.ByStatus[status] = n
		u.RunSeconds += secs
		u.Usage = u.Usage.Plus(used)
	}
	return out, rows.Err()
}

// ExecutingBy implements store.Monitor over the executing tasks (few: at
// most the workers' concurrency), found through tasks_executing_provider.
func (s *Store) ExecutingBy(ctx context.Context) (byExecutor, byInstance map[string]int, err error) {
	rows, err := s.r.QueryContext(ctx, `SELECT provider_type, executor_instance, COUNT(*) FROM tasks`+s.d.indexedBy("tasks_executing_provider")+`
		WHERE status = 'executing' GROUP BY provider_type, executor_instance`)
	if err != nil {
		return nil, nil, fmt.Errorf("counting executing tasks: %w", classify(err))
	}
	defer rows.Close()
	byExecutor, byInstance = map[string]int{}, map[string]int{}
	for rows.Next() {
		var (
			ex, inst string
			n        int
		)
		if err := rows.Scan(&ex, &inst, &n); err != nil {
			return nil, nil, fmt.Errorf("counting executing tasks: %w", err)
		}
		byExecutor[ex] += n
		byInstance[inst] += n
	}
	return byExecutor, byInstance, rows.Err()
}

// ExecutorStats implements store.Monitor with a range of
// tasks_finished_queue (and the rows it points to, for the executor and
// the start time).
func (s *Store) ExecutorStats(ctx context.Context, since time.Time) (map[string]store.ExecutorStats, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT provider_type, status, COUNT(*),
		COALESCE(SUM(CASE WHEN started_at IS NOT NULL THEN `+fmt.Sprintf(s.d.seconds, "started_at", "completed_at")+` ELSE 0 END), 0)
		FROM tasks`+s.d.indexedBy("tasks_finished_queue")+`
		WHERE completed_at IS NOT NULL AND completed_at >= $1 AND status IN ('completed', 'failed') GROUP BY provider_type, status`, dbTime(since))
	if err != nil {
		return nil, fmt.Errorf("counting executors' finished tasks: %w", classify(err))
	}
	defer rows.Close()
	out := map[string]store.ExecutorStats{}
	for rows.Next() {
		var (
			ex, status string
			n          int
			secs       float64
		)
		if err := rows.Scan(&ex, &status, &n, &secs); err != nil {
			return nil, fmt.Errorf("counting executors' finished tasks: %w", err)
		}
		st := out[ex]
		if status == "completed" {
			st.Completed, st.RunSeconds = n, secs
		} else {
			st.Failed = n
		}
		out[ex] = st
	}
	return out, rows.Err()
}

// RecentFailures implements store.Monitor with a range of
// tasks_finished_queue, numbered by executor.
func (s *Store) RecentFailures(ctx context.Context, since time.Time, perExecutor int) (map[string][]store.Failure, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT provider_type, id, task_type, completed_at, error_category, error_message FROM (
		SELECT provider_type, id, task_type, completed_at, error_category, error_message,
			ROW_NUMBER() OVER (PARTITION BY provider_type ORDER BY completed_at DESC, id DESC) AS n
		FROM tasks`+s.d.indexedBy("tasks_finished_queue")+`
		WHERE completed_at IS NOT NULL AND completed_at >= $1 AND status = 'failed') f
		WHERE n <= $2 ORDER BY provider_type, completed_at DESC, id DESC`, dbTime(since), perExecutor)
	if err != nil {
		return nil, fmt.Errorf("reading recent failures: %w", classify(err))
	}
	defer rows.Close()
	out := map[string][]store.Failure{}
	for rows.Next() {
		var (
			ex string
			f  store.Failure
			at aggTime
		)
		if err := rows.Scan(&ex, &f.TaskID, &f.TaskType, &at, &f.Category, &f.Message); err != nil {
			return nil, fmt.Errorf("reading recent failures: %w", err)
		}
		f.At = at.t
		out[ex] = append(out[ex], f)
	}
	return out, rows.Err()
}

// SlotsInUse implements store.Monitor.
func (s *Store) SlotsInUse(ctx context.Context) (map[string]map[string]int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT executor, server, COUNT(*) FROM executor_slots s
		WHERE NOT `+slotFree+` GROUP BY executor, server`)
	if err != nil {
		return nil, fmt.Errorf("counting slots in use: %w", classify(err))
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var (
			ex, server string
			n          int
		)
		if err := rows.Scan(&ex, &server, &n); err != nil {
			return nil, fmt.Errorf("counting slots in use: %w", err)
		}
		if out[ex] == nil {
			out[ex] = map[string]int{}
		}
		out[ex][server] = n
	}
	return out, rows.Err()
}

// RegisterProcess implements store.Monitor.
func (s *Store) RegisterProcess(ctx context.Context, p store.Process) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO processes (instance, role, version, started_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (instance) DO UPDATE SET role = excluded.role, version = excluded.version,
		started_at = excluded.started_at, last_seen_at = excluded.last_seen_at`,
		p.Instance, p.Role, p.Version, dbTime(p.StartedAt), dbTime(p.LastSeen))
	if err != nil {
		return fmt.Errorf("registering process %s: %w", p.Instance, classify(err))
	}
	return nil
}

// ListProcesses implements store.Monitor.
func (s *Store) ListProcesses(ctx context.Context, since time.Time) ([]store.Process, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT instance, role, version, started_at, last_seen_at FROM processes
		WHERE last_seen_at >= $1 ORDER BY instance`, dbTime(since))
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", classify(err))
	}
	defer rows.Close()
	var out []store.Process
	for rows.Next() {
		var p store.Process
		if err := rows.Scan(&p.Instance, &p.Role, &p.Version, &p.StartedAt, &p.LastSeen); err != nil {
			return nil, fmt.Errorf("listing processes: %w", err)
		}
		p.StartedAt, p.LastSeen = p.StartedAt.UTC(), p.LastSeen.UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// ForgetProcesses implements store.Monitor.
func (s *Store) ForgetProcesses(ctx context.Context, before time.Time) (int, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM processes WHERE last_seen_at < $1`, dbTime(before))
	if err != nil {
		return 0, fmt.Errorf("forgetting processes: %w", classify(err))
	}
	n, err := res.RowsAffected()
	return int(n), err
}

var _ sql.Scanner = (*aggTime)(nil)

// aggTime scans a time an aggregate returns: SQLite's MIN over a time
// column loses the column's type and gives the stored text.
type aggTime struct{ t time.Time }

// Scan implements sql.Scanner.
func (a *aggTime) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		a.t = time.Time{}
	case time.Time:
		a.t = v.UTC()
	case string:
		return a.parse(v)
	case []byte:
		return a.parse(string(v))
	default:
		return fmt.Errorf("scanning a time from %T", v)
	}
	return nil
}

func (a *aggTime) parse(s string) error {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999-07:00", time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			a.t = t.UTC()
			return nil
		}
	}
	return errors.New("scanning a time: unknown format " + s)
}

// Pools returns the store's connection pools by name (writer, reader,
// lists; one pool serving two roles is listed once), for their
// statistics (sql.DBStats).
func (s *Store) Pools() map[string]*sql.DB {
	out := map[string]*sql.DB{}
	seen := map[*sql.DB]bool{}
	for _, p := range []struct {
		name string
		db   *dbx
	}{{"writer", s.w}, {"reader", s.r}, {"lists", s.lists}} {
		if p.db == nil || seen[p.db.DB] {
			continue
		}
		seen[p.db.DB] = true
		out[p.name] = p.db.DB
	}
	return out
}
