package command

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
)

// The exit codes a process-mode process ends with, and their categories.
// Any other non-zero code, or a death by a signal the executor did not
// send, is a provider_error (retried).
const (
	// ExitInvalidInput (2): the task's input is unusable; not retried.
	ExitInvalidInput = 2
	// ExitSafetyBlocked (3): a content filter refused; not retried.
	ExitSafetyBlocked = 3
	// ExitUnavailable (75, EX_TEMPFAIL): a resource the process needs is
	// unavailable (a GPU, a model server); retried, fallbacks take over.
	ExitUnavailable = 75
)

// drainTimeout bounds the wait for the output pipe to close after the
// process group was killed (a process that left the group may hold it).
const drainTimeout = 5 * time.Second

// linger is how long a process that ended stays known to Wait and
// Recover when no Wait took its result.
const linger = time.Minute

// proc is a running (or ended, not yet waited for) process-mode job.
type proc struct {
	id        string
	g         *group
	work, out string
	tail      *tail
	queue
	done     chan struct{} // closed when the process was reaped
	exitCode int           // -1: killed by a signal
	signal   syscall.Signal
	*tracker

	mu        sync.Mutex
	cancelled bool
}

// startProcess starts the job's process.
func (e *Executor) startProcess(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	id, work, out, in, err := e.workDirs()
	if err != nil {
		return executor.Handle{}, err
	}
	h, err := e.spawn(ctx, job, id, work, out, in)
	if err != nil {
		_ = os.RemoveAll(work)
	}
	return h, err
}

func (e *Executor) spawn(ctx context.Context, job *executor.Job, id, work, out, in string) (executor.Handle, error) {
	saved := savedState(job, e.name)
	ckpt, err := e.checkpointFor(ctx, job, saved, in)
	if err != nil {
		return executor.Handle{}, err
	}
	f, err := newFiller(job, work, out, in, ckpt)
	if err != nil {
		return executor.Handle{}, err
	}
	args := make([]string, 0, len(e.argv)-1)
	for _, a := range e.argv[1:] {
		v, err := f.fill(ctx, a)
		if err != nil {
			return executor.Handle{}, err
		}
		args = append(args, v)
	}
	env, err := e.environ(ctx, f)
	if err != nil {
		return executor.Handle{}, err
	}
	cmd := exec.Command(e.argv[0], args...)
	cmd.Dir, cmd.Env, cmd.SysProcAttr = e.dir, env, sysProcAttr()
	if cmd.Dir == "" {
		cmd.Dir = work
	}
	r, w, err := os.Pipe()
	if err != nil {
		return executor.Handle{}, fmt.Errorf("command: creating the output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_, _ = r.Close(), w.Close()
		return executor.Handle{}, executor.Errorf(executor.ProviderUnavailable, "command: the executor is closed")
	}
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		e.mu.Unlock()
		_ = r.Close()
		return executor.Handle{}, startError(e.s.Command[0], err)
	}
	pid := cmd.Process.Pid
	start, _, _ := procStat(pid)
	p := &proc{id: id, g: &group{pgid: pid, start: start}, work: work, out: out, tail: newTail(e.s.LogLines),
		queue: newQueue(), done: make(chan struct{}), tracker: newTracker(cmd.Dir)}
	e.procs[id] = p
	e.mu.Unlock()
	if err := e.groups.add(pid, start); err != nil {
		e.log.Warn("a process group is not recorded; a worker killed with -9 may leave it running", "executor", e.name, "pgid", pid, "error", err)
	}
	go e.supervise(p, cmd, r)
	e.log.Debug("started process", "executor", e.name, "task_id", job.TaskID, "pid", pid, "program", e.s.Command[0])
	st := state{Mode: ModeProcess, Machine: e.machine, PGID: pid, Start: start, Checkpoint: saved.Checkpoint}
	return executor.Handle{Executor: e.name, ExternalID: id, Version: executor.HandleVersion, State: st.raw()}, nil
}

// startError classifies a process that could not be started: a program
// that is missing or not executable makes the executor unavailable.
func startError(prog string, err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return executor.Errorf(executor.ProviderUnavailable, "command: starting %s: %w", prog, err)
	}
	return executor.Errorf(executor.ProviderError, "command: starting %s: %w", prog, err)
}

// baseEnv are the worker's variables a process gets without inherit_env.
var baseEnv = []string{"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"}

// environ is the process's environment: the worker's (all of it, or the
// base variables), the job's COMPUTE_* variables, then the settings' env
// with templates filled. A server's (f nil) has no job variables.
func (e *Executor) environ(ctx context.Context, f *filler) ([]string, error) {
	var env []string
	if e.s.InheritEnv {
		env = os.Environ()
	} else {
		for _, k := range baseEnv {
			if v, ok := os.LookupEnv(k); ok {
				env = append(env, k+"="+v)
			}
		}
	}
	if f == nil {
		for _, k := range sortedKeys(e.s.Env) {
			env = append(env, k+"="+e.s.Env[k])
		}
		return env, nil
	}
	env = append(env,
		"COMPUTE_TASK_ID="+f.builtin[varTaskID], "COMPUTE_ATTEMPT="+f.builtin[varAttempt],
		"COMPUTE_WORK_DIR="+f.builtin[varWorkDir], "COMPUTE_OUTPUT_DIR="+f.builtin[varOutputDir],
		"COMPUTE_CHECKPOINT="+f.builtin[varCheckpoint])
	for _, k := range sortedKeys(e.s.Env) {
		v, err := f.fill(ctx, e.s.Env[k])
		if err != nil {
			return nil, fmt.Errorf("env %s: %w", k, err)
		}
		env = append(env, k+"="+v)
	}
	return env, nil
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// supervise reads the process's output until it ends, kills what is left
// of its group once the leader exited, reaps it and forgets its group.
func (e *Executor) supervise(p *proc, cmd *exec.Cmd, r *os.File) {
	read := make(chan struct{})
	go func() {
		defer close(read)
		readLines(r, func(line string) {
			if ev, ok := parseLine(line); ok {
				p.push(ev)
				return
			}
			p.tail.add(line)
		})
	}()
	reap(cmd, p.g, read, func() { _ = r.Close() })
	_ = r.Close()
	e.groups.remove(p.g.pgid)
	p.exitCode = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		p.signal = ws.Signal()
	}
	close(p.done)
	time.AfterFunc(linger, func() { e.forget(p) })
}

// forget drops an ended process nobody waited for, with its work
// directory.
func (e *Executor) forget(p *proc) {
	e.mu.Lock()
	known := e.procs[p.id] == p
	delete(e.procs, p.id)
	e.mu.Unlock()
	if known {
		_ = os.RemoveAll(p.work)
	}
}

// queue is the events of a job waiting for its Wait.
type queue struct {
	qmu    sync.Mutex
	events []event
	notify chan struct{} // a new event (capacity 1)
}

func newQueue() queue { return queue{notify: make(chan struct{}, 1)} }

func (q *queue) push(ev event) {
	q.qmu.Lock()
	q.events = append(q.events, ev)
	q.qmu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *queue) take() []event {
	q.qmu.Lock()
	defer q.qmu.Unlock()
	evs := q.events
	q.events = nil
	return evs
}

// follow applies a job's events as they come until ended is closed and
// every event before it was applied, or until ctx ends.
func (e *Executor) follow(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter, t *tracker, q *queue, ended <-chan struct{}) error {
	st, err := parseState(h)
	if err != nil {
		return executor.Errorf(executor.Lost, "command: %w", err)
	}
	for {
		finished := false
		select {
		case <-ended:
			finished = true
		default:
		}
		for _, ev := range q.take() {
			if err := e.apply(ctx, job, &h, &st, t, ev, r); err != nil {
				return err
			}
		}
		if finished {
			return nil
		}
		select {
		case <-q.notify:
		case <-ended:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// workDirs creates a new job's work directory with its output and input
// directories.
func (e *Executor) workDirs() (id, work, out, in string, err error) {
	id = uuid.NewString()
	work = filepath.Join(e.state, "jobs", id)
	out, in = filepath.Join(work, "output"), filepath.Join(work, "input")
	for _, d := range []string{out, in} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return "", "", "", "", fmt.Errorf("command: creating the work directory: %w", err)
		}
	}
	return id, work, out, in, nil
}

// waitProcess follows the job's process to its end.
func (e *Executor) waitProcess(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	e.mu.Lock()
	p := e.procs[h.ExternalID]
	e.mu.Unlock()
	if p == nil {
		return nil, executor.Errorf(executor.Lost, "command: job %s is not running in this worker", h.ExternalID)
	}
	if err := e.follow(ctx, job, h, r, p.tracker, &p.queue, p.done); err != nil {
		return nil, err
	}
	out, err := e.finish(ctx, job, p)
	if err == nil || !executor.CategoryOf(err).Retryable() {
		e.dropCheckpoint(job)
	}
	e.mu.Lock()
	delete(e.procs, p.id)
	e.mu.Unlock()
	_ = os.RemoveAll(p.work)
	return out, err
}

// tracker is what Wait keeps of a job's events: the progress reported,
// the result data, the checkpoints stored.
type tracker struct {
	cwd     string // relative checkpoint paths start here
	tmu     sync.Mutex
	lastPct float64
	data    map[string]any
	stored  map[string]bool // absolute paths stored as checkpoints
}

func newTracker(cwd string) *tracker {
	return &tracker{cwd: cwd, data: map[string]any{}, stored: map[string]bool{}}
}

// apply acts on one event of the job's process or server request.
func (e *Executor) apply(ctx context.Context, job *executor.Job, h *executor.Handle, st *state, t *tracker, ev event, r executor.Reporter) error {
	switch ev.kind {
	case evProgress:
		t.tmu.Lock()
		pct := max(t.lastPct, ev.pct)
		t.lastPct = pct
		t.tmu.Unlock()
		return r.Progress(ctx, pct, ev.stage)
	case evResult:
		t.tmu.Lock()
		maps.Copy(t.data, ev.data)
		t.tmu.Unlock()
	case evCheckpoint:
		return e.checkpoint(ctx, job, h, st, t.cwd, ev.path, t.stored)
	}
	return nil
}

// result is a finished job's output: its output directory's files and
// the result data.
func (e *Executor) result(ctx context.Context, job *executor.Job, out string, t *tracker, data map[string]any) (*executor.Output, error) {
	arts, err := e.collect(ctx, job, out, t.stored)
	if err != nil {
		return nil, err
	}
	t.tmu.Lock()
	maps.Copy(data, t.data)
	t.tmu.Unlock()
	return &executor.Output{Artifacts: arts, Data: data}, nil
}

// finish turns an ended process into the job's output or error.
func (e *Executor) finish(ctx context.Context, job *executor.Job, p *proc) (*executor.Output, error) {
	p.mu.Lock()
	cancelled := p.cancelled
	p.mu.Unlock()
	switch {
	case cancelled:
		return nil, executor.Errorf(executor.Cancelled, "command: the process was cancelled")
	case p.signal != 0:
		return nil, executor.Errorf(executor.ProviderError, "%s", withTail("command: the process was killed by "+p.signal.String(), p.tail))
	case p.exitCode != 0:
		return nil, exitError(p.exitCode, p.tail)
	}
	return e.result(ctx, job, p.out, p.tracker, map[string]any{"exit_code": 0})
}

// exitError classifies a non-zero exit code.
func exitError(code int, t *tail) error {
	c := executor.ProviderError
	switch code {
	case ExitInvalidInput:
		c = executor.InvalidInput
	case ExitSafetyBlocked:
		c = executor.SafetyBlocked
	case ExitUnavailable:
		c = executor.ProviderUnavailable
	}
	return executor.Errorf(c, "%s", withTail("command: the process exited with code "+strconv.Itoa(code), t))
}

// cancelProcess stops the job's process group: SIGTERM, then SIGKILL
// after the grace. A job of another worker on this machine (its handle's
// group) is killed at once.
func (e *Executor) cancelProcess(h executor.Handle) error {
	e.mu.Lock()
	p := e.procs[h.ExternalID]
	e.mu.Unlock()
	if p == nil {
		if st, err := parseState(h); err == nil && st.PGID > 0 && e.machine != "" && st.Machine == e.machine {
			killGroupIf(st.PGID, st.Start)
		}
		return nil
	}
	select {
	case <-p.done:
		return nil // it ended: nothing to cancel
	default:
	}
	p.mu.Lock()
	p.cancelled = true
	p.mu.Unlock()
	p.g.terminate(e.grace)
	return nil
}
