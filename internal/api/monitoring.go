package api

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"golang.org/x/sync/singleflight"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/task"
)

// The monitoring routes: the deployment's queues, processes, executors and
// tenants, read from the database every process shares (and, for an
// executor's servers, from what this process's executors learnt of them).
// Every route but /monitoring/tenants needs an admin key; a tenant's key
// sees its own usage there.

// QueueCounts are a queue's tasks finished within the last 1, 5 and 15
// minutes.
type QueueCounts struct {
	Last1m  int `json:"last_1m"`
	Last5m  int `json:"last_5m"`
	Last15m int `json:"last_15m"`
}

// QueueStatus is one queue in GET /monitoring/queues.
type QueueStatus struct {
	Queue                   string      `json:"queue"`
	Pending                 int         `json:"pending"`
	Executing               int         `json:"executing"`
	OldestPendingAt         *time.Time  `json:"oldest_pending_at" doc:"When the oldest pending task was created; null when none is pending."`
	OldestPendingAgeSeconds float64     `json:"oldest_pending_age_seconds" doc:"How long the oldest pending task has waited since its creation (0 when none is pending)."`
	Completed               QueueCounts `json:"completed" doc:"Tasks that completed within the last 1, 5 and 15 minutes."`
	Failed                  QueueCounts `json:"failed" doc:"Tasks that failed for good within the last 1, 5 and 15 minutes."`
}

type queuesOutput struct {
	Body struct {
		At     time.Time     `json:"at" doc:"When the counts were taken."`
		Queues []QueueStatus `json:"queues" doc:"Every queue with a pending or executing task or one finished in the last 15 minutes, by name."`
	}
}

// WorkerStatus is one process in GET /monitoring/workers.
type WorkerStatus struct {
	Instance     string     `json:"instance" doc:"The process's instance name (executor_instance of the tasks its workers run)."`
	Role         string     `json:"role" enum:"serve,api,worker,unknown" doc:"unknown: tasks are executing under an instance that has not registered (or stopped heartbeating more than an hour ago)."`
	Version      string     `json:"version"`
	StartedAt    *time.Time `json:"started_at"`
	LastSeenAt   *time.Time `json:"last_seen_at" doc:"The process's last heartbeat."`
	Up           bool       `json:"up" doc:"Whether the last heartbeat is recent (within three heartbeat intervals)."`
	RunningTasks int        `json:"running_tasks" doc:"Tasks executing under this instance now."`
}

type workersOutput struct {
	Body struct {
		Workers []WorkerStatus `json:"workers" doc:"The processes seen in the last hour, by instance."`
	}
}

// ExecutorServer is one server of an executor (a ComfyUI server).
type ExecutorServer struct {
	URL       string     `json:"url"`
	Up        bool       `json:"up" doc:"false when this process's last call to the server got no answer (in time). A server this process has not called within a heartbeat interval (10 s) is probed (GET /system_stats, one probe shared by concurrent requests) before the answer."`
	LastError string     `json:"last_error,omitempty" doc:"What that call got, when the server is down."`
	CheckedAt *time.Time `json:"checked_at" doc:"When this process last called the server; null when it has not yet."`
	Slots     int        `json:"slots" doc:"How many jobs the server holds at once."`
	SlotsUsed int        `json:"slots_used" doc:"Slots held by running tasks of every process."`
}

// ExecutorStatus is one configured executor in GET /monitoring/executors.
type ExecutorStatus struct {
	Name            string           `json:"name" doc:"The configured name, which a task's provider_type names."`
	Type            string           `json:"type" doc:"The executor kind (comfyui, fal, openai, mock…)."`
	Concurrency     int              `json:"concurrency" doc:"The most tasks running on it at once over every process; 0: no limit."`
	StartsPerMinute int              `json:"starts_per_minute" doc:"The most jobs started in any minute; 0: no limit."`
	Running         int              `json:"running" doc:"Its tasks executing now, in every process."`
	PausedUntil     *time.Time       `json:"paused_until" doc:"Until when no task of it is claimed (after a 429, or while its start rate is used up); null when it is not paused."`
	PauseReason     string           `json:"pause_reason,omitempty"`
	Last15m         ExecutorRecent   `json:"last_15m" doc:"Its tasks that finished in the last 15 minutes, in every process."`
	Servers         []ExecutorServer `json:"servers,omitempty" doc:"Its servers, for executors with servers of their own (comfyui)."`
}

// ExecutorRecent are an executor's recently finished tasks.
type ExecutorRecent struct {
	Completed      int             `json:"completed"`
	Failed         int             `json:"failed" doc:"Tasks that failed for good (after their retries)."`
	ErrorRate      float64         `json:"error_rate" doc:"failed / (completed + failed); 0 when none finished."`
	MeanRunSeconds float64         `json:"mean_run_seconds" doc:"Mean time from start to end of the completed ones; 0 when none completed."`
	RecentErrors   []ExecutorError `json:"recent_errors" doc:"Its last tasks that failed for good, newest first (at most 5)."`
}

// recentErrors is how many of an executor's last failures
// GET /monitoring/executors lists.
const recentErrors = 5

// ExecutorError is one of an executor's recent failures.
type ExecutorError struct {
	TaskID        string    `json:"task_id" format:"uuid"`
	TaskType      string    `json:"task_type"`
	At            time.Time `json:"at" doc:"When it failed."`
	ErrorCategory string    `json:"error_category"`
	ErrorMessage  string    `json:"error_message"`
}

type executorsOutput struct {
	Body struct {
		Executors []ExecutorStatus `json:"executors"`
	}
}

// TenantStatus is one tenant's usage in GET /monitoring/tenants.
type TenantStatus struct {
	TenantID   string         `json:"tenant_id" doc:"The tenant (\"\" for tasks created with an admin key)."`
	Tasks      map[string]int `json:"tasks" doc:"Its tasks by status."`
	Total      int            `json:"total"`
	RunSeconds float64        `json:"run_seconds" doc:"Seconds from start to end of its finished tasks, summed."`
	// The usage its tasks' services reported (task.Usage), summed.
	ProviderSeconds float64 `json:"provider_seconds" doc:"Seconds of work the services reported for its tasks (Replicate and Cog predict_time, fal inference_time, ComfyUI execution start to success), summed; services that report none (OpenAI, Gemini, local executors) add nothing."`
	InputTokens     int64   `json:"input_tokens" doc:"Prompt (input) tokens language and image models reported for its tasks (OpenAI, Gemini, Replicate), summed."`
	OutputTokens    int64   `json:"output_tokens" doc:"Answer (output) tokens language and image models reported for its tasks, summed."`
}

type tenantsOutput struct {
	Body struct {
		Tenants []TenantStatus `json:"tenants" doc:"By tenant id; a tenant's key sees only its own."`
	}
}

// monitor returns the store's monitoring view.
func (s *Server) monitor() (store.Monitor, error) {
	m, ok := s.deps.Store.(store.Monitor)
	if !ok {
		return nil, storeProblem(http.StatusServiceUnavailable, "this store does not report monitoring numbers")
	}
	return m, nil
}

// adminMonitor is monitor for the admin-only routes: a tenant's key is
// refused first.
func (s *Server) adminMonitor(ctx context.Context) (store.Monitor, error) {
	if err := adminOnly(ctx); err != nil {
		return nil, err
	}
	return s.monitor()
}

// adminOnly refuses a tenant's key.
func adminOnly(ctx context.Context) error {
	if !principalFrom(ctx).admin {
		return huma.Error403Forbidden("this route needs an admin API key: it concerns the whole deployment")
	}
	return nil
}

func (s *Server) registerMonitoringRoutes() {
	tags := []string{"Monitoring"}
	huma.Register(s.api, huma.Operation{
		OperationID: "monitor-queues", Method: http.MethodGet, Path: "/api/v1/monitoring/queues", Tags: tags,
		Summary:     "Queues: pending, executing, oldest pending age, finished in the last 1/5/15 minutes",
		Description: "Counts for the whole deployment, read from the database. Admin key only.",
		Security:    bearer, Errors: []int{401, 403, 503},
	}, func(ctx context.Context, _ *struct{}) (*queuesOutput, error) {
		m, err := s.adminMonitor(ctx)
		if err != nil {
			return nil, err
		}
		now := task.Now()
		stats, err := m.QueueStats(ctx, now)
		if err != nil {
			return nil, s.problem(err, "queues")
		}
		out := &queuesOutput{}
		out.Body.At = now
		out.Body.Queues = make([]QueueStatus, len(stats))
		for i, q := range stats {
			qs := QueueStatus{
				Queue: q.Queue, Pending: q.Pending, Executing: q.Executing,
				Completed: QueueCounts{q.Completed[0], q.Completed[1], q.Completed[2]},
				Failed:    QueueCounts{q.Failed[0], q.Failed[1], q.Failed[2]},
			}
			if !q.OldestPending.IsZero() {
				at := q.OldestPending
				qs.OldestPendingAt, qs.OldestPendingAgeSeconds = &at, max(now.Sub(at).Seconds(), 0)
			}
			out.Body.Queues[i] = qs
		}
		return out, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "monitor-workers", Method: http.MethodGet, Path: "/api/v1/monitoring/workers", Tags: tags,
		Summary:     "Processes: instance, role, version, started, last seen, running tasks",
		Description: "Every process registers at start and heartbeats; this lists those seen in the last hour, and any instance tasks are executing under that is not among them. Admin key only.",
		Security:    bearer, Errors: []int{401, 403, 503},
	}, func(ctx context.Context, _ *struct{}) (*workersOutput, error) {
		m, err := s.adminMonitor(ctx)
		if err != nil {
			return nil, err
		}
		now := task.Now()
		procs, err := m.ListProcesses(ctx, now.Add(-time.Hour))
		if err != nil {
			return nil, s.problem(err, "workers")
		}
		_, running, err := m.ExecutingBy(ctx)
		if err != nil {
			return nil, s.problem(err, "workers")
		}
		out := &workersOutput{}
		out.Body.Workers = []WorkerStatus{}
		for _, p := range procs {
			started, seen := p.StartedAt, p.LastSeen
			out.Body.Workers = append(out.Body.Workers, WorkerStatus{
				Instance: p.Instance, Role: p.Role, Version: p.Version, StartedAt: &started, LastSeenAt: &seen,
				Up: now.Sub(seen) <= 3*s.cfg.HeartbeatInterval, RunningTasks: running[p.Instance],
			})
			delete(running, p.Instance)
		}
		for inst, n := range running {
			out.Body.Workers = append(out.Body.Workers, WorkerStatus{Instance: inst, Role: "unknown", RunningTasks: n})
		}
		sort.Slice(out.Body.Workers, func(i, j int) bool { return out.Body.Workers[i].Instance < out.Body.Workers[j].Instance })
		return out, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "monitor-executors", Method: http.MethodGet, Path: "/api/v1/monitoring/executors", Tags: tags,
		Summary:     "Executors: type, limits, pause, running tasks, recent outcomes, errors and run time, servers and slots",
		Description: "The executors configured on this process. Running tasks, pauses and slots in use are the deployment's (from the database); a server's up/down is what this process's last call to it found. Admin key only.",
		Security:    bearer, Errors: []int{401, 403, 503},
	}, func(ctx context.Context, _ *struct{}) (*executorsOutput, error) {
		m, err := s.adminMonitor(ctx)
		if err != nil {
			return nil, err
		}
		running, _, err := m.ExecutingBy(ctx)
		if err != nil {
			return nil, s.problem(err, "executors")
		}
		slots, err := m.SlotsInUse(ctx)
		if err != nil {
			return nil, s.problem(err, "executors")
		}
		since := task.Now().Add(-15 * time.Minute)
		recent, err := m.ExecutorStats(ctx, since)
		if err != nil {
			return nil, s.problem(err, "executors")
		}
		failures, err := m.RecentFailures(ctx, since, recentErrors)
		if err != nil {
			return nil, s.problem(err, "executors")
		}
		pauses := map[string]store.ExecutorPause{}
		if g, ok := s.deps.Store.(store.Gates); ok {
			if pauses, err = g.ExecutorPauses(ctx); err != nil {
				return nil, s.problem(err, "executors")
			}
		}
		out := &executorsOutput{}
		out.Body.Executors = s.executorStates(ctx, running, slots, recent, failures, pauses)
		return out, nil
	})

	huma.Register(s.api, huma.Operation{
		OperationID: "monitor-tenants", Method: http.MethodGet, Path: "/api/v1/monitoring/tenants", Tags: tags,
		Summary:     "Usage per tenant: tasks by status, run seconds",
		Description: "An admin key sees every tenant; a tenant's key sees its own usage only.",
		Security:    bearer, Errors: []int{401, 503},
	}, func(ctx context.Context, _ *struct{}) (*tenantsOutput, error) {
		m, err := s.monitor()
		if err != nil {
			return nil, err
		}
		usage, err := m.TenantUsage(ctx, principalFrom(ctx).scope())
		if err != nil {
			return nil, s.problem(err, "tenants")
		}
		out := &tenantsOutput{}
		out.Body.Tenants = make([]TenantStatus, len(usage))
		for i, u := range usage {
			ts := TenantStatus{TenantID: u.TenantID, Tasks: u.ByStatus, RunSeconds: u.RunSeconds,
				ProviderSeconds: u.Usage.ProviderSeconds, InputTokens: u.Usage.InputTokens, OutputTokens: u.Usage.OutputTokens}
			for _, n := range u.ByStatus {
				ts.Total += n
			}
			out.Body.Tenants[i] = ts
		}
		return out, nil
	})
}

// executorStates describes the configured executors, by name.
func (s *Server) executorStates(ctx context.Context, running map[string]int, slots map[string]map[string]int, recent map[string]store.ExecutorStats,
	failures map[string][]store.Failure, pauses map[string]store.ExecutorPause) []ExecutorStatus {
	out := []ExecutorStatus{}
	set := s.deps.Executors
	if set == nil {
		return out
	}
	names := set.Names()
	slices.Sort(names)
	for _, name := range names {
		l := set.LimitsOf(name)
		es := ExecutorStatus{Name: name, Type: set.Kind(name), Concurrency: l.Concurrency, StartsPerMinute: l.StartsPerMinute, Running: running[name]}
		r := recent[name]
		es.Last15m = ExecutorRecent{Completed: r.Completed, Failed: r.Failed, RecentErrors: []ExecutorError{}}
		for _, f := range failures[name] {
			es.Last15m.RecentErrors = append(es.Last15m.RecentErrors, ExecutorError{
				TaskID: f.TaskID.String(), TaskType: f.TaskType, At: f.At, ErrorCategory: f.Category, ErrorMessage: f.Message,
			})
		}
		if n := r.Completed + r.Failed; n > 0 {
			es.Last15m.ErrorRate = float64(r.Failed) / float64(n)
		}
		if r.Completed > 0 {
			es.Last15m.MeanRunSeconds = r.RunSeconds / float64(r.Completed)
		}
		if p, ok := pauses[name]; ok {
			until := p.Until
			es.PausedUntil, es.PauseReason = &until, p.Reason
		}
		if ex, ok := set.Lookup(name); ok {
			if r, ok := ex.(executor.ServerReporter); ok {
				for _, st := range s.freshServerStates(ctx, name, ex, r) {
					srv := ExecutorServer{URL: st.URL, Up: !st.Down, LastError: st.LastError, Slots: st.Slots, SlotsUsed: slots[name][st.URL]}
					if !st.CheckedAt.IsZero() {
						at := st.CheckedAt.UTC()
						srv.CheckedAt = &at
					}
					es.Servers = append(es.Servers, srv)
				}
			}
		}
		out = append(out, es)
	}
	return out
}

// serverProbeTimeout bounds the probe of an executor's servers that
// GET /monitoring/executors makes.
const serverProbeTimeout = 3 * time.Second

// serverProbes shares and spaces out the probes GET /monitoring/executors
// makes: concurrent requests wait on one probe per executor, and a probe
// counts as recent for a heartbeat interval, whatever it found.
type serverProbes struct {
	group singleflight.Group
	mu    sync.Mutex
	last  map[string]time.Time // executor name → when its last probe ended
}

// recent reports whether name's servers were probed within d.
func (p *serverProbes) recent(name string, d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.last[name]
	return ok && time.Since(at) <= d
}

// run probes name's servers with ping, or waits for the probe under way,
// for at most as long as ctx lasts; the probe itself is bounded by
// serverProbeTimeout and outlives a request that gives up on it.
func (p *serverProbes) run(ctx context.Context, name string, ping executor.Pinger) {
	ch := p.group.DoChan(name, func() (any, error) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serverProbeTimeout)
		defer cancel()
		_ = ping.Ping(pctx) // each server's outcome is in its state
		p.mu.Lock()
		p.last[name] = time.Now()
		p.mu.Unlock()
		return nil, nil
	})
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// freshServerStates returns r's server states, probing the servers first
// (when the executor can, executor.Pinger) if this process has not called
// one of them, nor probed them, within a heartbeat interval: an API
// process that runs no tasks would otherwise report servers it never
// called as up.
func (s *Server) freshServerStates(ctx context.Context, name string, ex executor.Executor, r executor.ServerReporter) []executor.ServerState {
	states := r.ServerStates()
	p, ok := ex.(executor.Pinger)
	if !ok {
		return states
	}
	stale := slices.ContainsFunc(states, func(st executor.ServerState) bool {
		return st.CheckedAt.IsZero() || time.Since(st.CheckedAt) > s.cfg.HeartbeatInterval
	})
	if !stale || s.probes.recent(name, s.cfg.HeartbeatInterval) {
		return states
	}
	s.probes.run(ctx, name, p)
	return r.ServerStates()
}
