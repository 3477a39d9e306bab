package command

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
)

// The server protocol (server mode): JSON objects, one per line. The
// executor writes requests to the server's stdin:
//
//	{"id":ID,"op":"run","task_id":…,"task_type":…,"attempt":N,"operation":…,
//	 "fields":{…},"inputs":{FIELD:PATH},"work_dir":…,"output_dir":…,"checkpoint":PATH|""}
//	{"id":ID,"op":"cancel"}
//
// and reads replies from its stdout (every other stdout line, and all of
// stderr, is log output):
//
//	{"id":ID,"progress":42.5,"stage":"sampling"}
//	{"id":ID,"checkpoint":PATH}             relative paths: to the task's work_dir
//	{"id":ID,"output":{…}}                  merged into the task's result data
//	{"id":ID,"error":{"category":C,"message":M}}   ends the task
//	{"id":ID,"done":true}                   ends the task; output_dir's files are its outputs
//
// After a cancel the executor ignores the task's replies.

// runRequest is a run request to the server.
type runRequest struct {
	ID         string            `json:"id"`
	Op         string            `json:"op"`
	TaskID     string            `json:"task_id,omitempty"`
	TaskType   string            `json:"task_type,omitempty"`
	Attempt    int               `json:"attempt,omitempty"`
	Operation  string            `json:"operation,omitempty"`
	Fields     json.RawMessage   `json:"fields,omitempty"`
	Inputs     map[string]string `json:"inputs,omitempty"`
	WorkDir    string            `json:"work_dir,omitempty"`
	OutputDir  string            `json:"output_dir,omitempty"`
	Checkpoint *string           `json:"checkpoint,omitempty"`
}

// reply is one line of the server's replies.
type reply struct {
	ID         string         `json:"id"`
	Progress   *float64       `json:"progress"`
	Stage      string         `json:"stage"`
	Checkpoint string         `json:"checkpoint"`
	Output     map[string]any `json:"output"`
	Error      *struct {
		Category string `json:"category"`
		Message  string `json:"message"`
	} `json:"error"`
	Done bool `json:"done"`
}

// request is a task sent to the server.
type request struct {
	id        string
	work, out string
	*tracker
	queue
	srv   *server
	ended chan struct{} // closed with end set

	mu   sync.Mutex
	end  error // nil: done
	over bool
}

// finish ends the request with err (nil: done); only the first end
// counts.
func (q *request) finish(err error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.over {
		return
	}
	q.over, q.end = true, err
	close(q.ended)
}

// server is the running server process of a server-mode executor.
type server struct {
	e     *Executor
	g     *group
	stdin *os.File
	tail  *tail
	done  chan struct{} // closed once the process was reaped

	wmu  sync.Mutex // one writer of stdin
	mu   sync.Mutex
	act  map[string]*request // the requests it serves
	dead bool                // it exited: it takes no requests
}

// add makes the server serve q; false when it has exited.
func (s *server) add(q *request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return false
	}
	s.act[q.id] = q
	return true
}

// ensureServer returns the running server, starting one when none runs.
// e.mu is held.
func (e *Executor) ensureServer() (*server, error) {
	if s := e.server; s != nil {
		s.mu.Lock()
		dead := s.dead
		s.mu.Unlock()
		if !dead {
			return s, nil
		}
	}
	env, err := e.environ(context.Background(), nil)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(e.argv[0], e.argv[1:]...)
	cmd.Dir, cmd.Env, cmd.SysProcAttr = e.dir, env, sysProcAttr()
	if cmd.Dir == "" {
		cmd.Dir = e.state
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("command: creating the server's pipes: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		_, _ = inR.Close(), inW.Close()
		return nil, fmt.Errorf("command: creating the server's pipes: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		_, _, _, _ = inR.Close(), inW.Close(), outR.Close(), outW.Close()
		return nil, fmt.Errorf("command: creating the server's pipes: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	err = cmd.Start()
	_, _, _ = inR.Close(), outW.Close(), errW.Close()
	if err != nil {
		_, _, _ = inW.Close(), outR.Close(), errR.Close()
		return nil, startError(e.s.Command[0], err)
	}
	pid := cmd.Process.Pid
	start, _, _ := procStat(pid)
	if err := e.groups.add(pid, start); err != nil {
		e.log.Warn("the server's process group is not recorded; a worker killed with -9 may leave it running", "executor", e.name, "pgid", pid, "error", err)
	}
	e.gen++
	s := &server{e: e, g: &group{pgid: pid, start: start}, stdin: inW, tail: newTail(e.s.LogLines),
		done: make(chan struct{}), act: map[string]*request{}}
	e.server = s
	e.log.Info("started server process", "executor", e.name, "pid", pid, "program", e.s.Command[0], "generation", e.gen)
	go s.run(cmd, outR, errR)
	return s, nil
}

// run reads the server's output until it exits, then fails the requests
// it was serving as provider_unavailable.
func (s *server) run(cmd *exec.Cmd, out, errOut *os.File) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); readLines(out, s.dispatch) }()
	go func() { defer wg.Done(); readLines(errOut, s.tail.add) }()
	read := make(chan struct{})
	go func() { wg.Wait(); close(read) }()
	reap(cmd, s.g, read, func() { _, _ = out.Close(), errOut.Close() })
	_, _, _ = out.Close(), errOut.Close(), s.stdin.Close()
	s.e.groups.remove(s.g.pgid)
	msg := "command: the server process exited (" + cmd.ProcessState.String() + ")"
	s.mu.Lock()
	act := s.act
	s.act, s.dead = map[string]*request{}, true
	s.mu.Unlock()
	for _, q := range act {
		q.finish(executor.Errorf(executor.ProviderUnavailable, "%s", withTail(msg, s.tail)))
	}
	s.e.log.Warn("the server process exited", "executor", s.e.name, "status", cmd.ProcessState.String())
	close(s.done)
	s.e.mu.Lock()
	if s.e.server == s {
		s.e.server = nil
	}
	s.e.mu.Unlock()
}

// dispatch hands a reply line to its request; other lines are logs.
func (s *server) dispatch(line string) {
	var r reply
	if !bytes.HasPrefix(bytes.TrimSpace([]byte(line)), []byte("{")) || json.Unmarshal([]byte(line), &r) != nil || r.ID == "" {
		s.tail.add(line)
		return
	}
	s.mu.Lock()
	q := s.act[r.ID]
	s.mu.Unlock()
	if q == nil {
		return // an ended or cancelled task's
	}
	if r.Progress != nil {
		q.push(event{kind: evProgress, pct: clamp(*r.Progress), stage: r.Stage})
	}
	if r.Checkpoint != "" {
		q.push(event{kind: evCheckpoint, path: r.Checkpoint})
	}
	if r.Output != nil {
		q.push(event{kind: evResult, data: r.Output})
	}
	switch {
	case r.Error != nil:
		s.forget(q.id)
		q.finish(serverError(r.Error.Category, r.Error.Message))
	case r.Done:
		s.forget(q.id)
		q.finish(nil)
	}
}

func (s *server) forget(id string) {
	s.mu.Lock()
	delete(s.act, id)
	s.mu.Unlock()
}

// serverError classifies a server's error reply; an unknown category is
// a provider error.
func serverError(category, message string) error {
	c := executor.Category(category)
	switch c {
	case executor.ProviderUnavailable, executor.ProviderError, executor.InvalidInput, executor.SafetyBlocked,
		executor.Timeout, executor.Cancelled:
	default:
		c = executor.ProviderError
	}
	return executor.Errorf(c, "command: the server failed the task: %s", message)
}

// send writes one request line to the server.
func (s *server) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("command: encoding a request: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.stdin.Write(append(b, '\n')); err != nil {
		return executor.Errorf(executor.ProviderUnavailable, "%s", withTail("command: writing to the server: "+err.Error(), s.tail))
	}
	return nil
}

// stop ends the server: its stdin is closed (a server exits at the end
// of its input), then SIGTERM and SIGKILL follow as for a cancel.
func (s *server) stop(grace time.Duration) {
	s.wmu.Lock()
	_ = s.stdin.Close()
	s.wmu.Unlock()
	select {
	case <-s.done:
		return
	case <-time.After(grace):
	}
	s.g.terminate(grace)
	<-s.done
}

// startRequest sends the job to the server, starting it when none runs.
func (e *Executor) startRequest(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	id, work, out, in, err := e.workDirs()
	if err != nil {
		return executor.Handle{}, err
	}
	h, err := e.sendRun(ctx, job, id, work, out, in)
	if err != nil {
		_ = os.RemoveAll(work)
	}
	return h, err
}

func (e *Executor) sendRun(ctx context.Context, job *executor.Job, id, work, out, in string) (executor.Handle, error) {
	saved := savedState(job, e.name)
	ckpt, err := e.checkpointFor(ctx, job, saved, in)
	if err != nil {
		return executor.Handle{}, err
	}
	f, err := newFiller(job, work, out, in, ckpt)
	if err != nil {
		return executor.Handle{}, err
	}
	inputs := map[string]string{}
	for _, name := range e.s.Inputs {
		if _, ok := f.fields[name]; !ok {
			continue // an optional input the task does not give
		}
		p, err := f.value(ctx, "input", name)
		if err != nil {
			return executor.Handle{}, err
		}
		inputs[name] = p
	}
	req := runRequest{ID: id, Op: "run", TaskID: job.TaskID.String(), TaskType: job.Type, Attempt: job.Attempt,
		Operation: job.Operation, Fields: job.Fields, Inputs: inputs, WorkDir: work, OutputDir: out, Checkpoint: &ckpt}
	q := &request{id: id, work: work, out: out, tracker: newTracker(work), queue: newQueue(), ended: make(chan struct{})}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return executor.Handle{}, executor.Errorf(executor.ProviderUnavailable, "command: the executor is closed")
	}
	s, err := e.ensureServer()
	if err != nil {
		e.mu.Unlock()
		return executor.Handle{}, err
	}
	q.srv = s
	if !s.add(q) {
		e.mu.Unlock()
		return executor.Handle{}, executor.Errorf(executor.ProviderUnavailable, "%s", withTail("command: the server process exited", s.tail))
	}
	e.reqs[id] = q
	e.mu.Unlock()
	if err := s.send(req); err != nil {
		s.forget(id)
		e.dropRequest(id)
		return executor.Handle{}, err
	}
	st := state{Mode: ModeServer, Checkpoint: saved.Checkpoint}
	return executor.Handle{Executor: e.name, ExternalID: id, Version: executor.HandleVersion, State: st.raw()}, nil
}

func (e *Executor) dropRequest(id string) {
	e.mu.Lock()
	delete(e.reqs, id)
	e.mu.Unlock()
}

// waitRequest follows the job's request to its end.
func (e *Executor) waitRequest(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	e.mu.Lock()
	q := e.reqs[h.ExternalID]
	e.mu.Unlock()
	if q == nil {
		return nil, executor.Errorf(executor.Lost, "command: job %s is not served by this worker's server", h.ExternalID)
	}
	if err := e.follow(ctx, job, h, r, q.tracker, &q.queue, q.ended); err != nil {
		return nil, err
	}
	e.dropRequest(q.id)
	defer func() { _ = os.RemoveAll(q.work) }()
	q.mu.Lock()
	end := q.end
	q.mu.Unlock()
	if end != nil {
		if !executor.CategoryOf(end).Retryable() {
			e.dropCheckpoint(job)
		}
		return nil, end
	}
	out, err := e.result(ctx, job, q.out, q.tracker, map[string]any{})
	if err == nil {
		e.dropCheckpoint(job)
	}
	return out, err
}

// cancelRequest asks the server to stop the job's task and ends its
// request as cancelled.
func (e *Executor) cancelRequest(_ context.Context, h executor.Handle) error {
	e.mu.Lock()
	q := e.reqs[h.ExternalID]
	e.mu.Unlock()
	if q == nil {
		return nil
	}
	select {
	case <-q.ended:
		return nil
	default:
	}
	q.srv.forget(q.id)
	q.finish(executor.Errorf(executor.Cancelled, "command: the task was cancelled"))
	select {
	case <-q.srv.done:
		return nil
	default:
	}
	if err := q.srv.send(runRequest{ID: q.id, Op: "cancel"}); err != nil {
		e.log.Warn("the cancel did not reach the server", "executor", e.name, "error", err)
	}
	return nil
}
