// Package command is the executor of local processes: training scripts and
// local models run on the worker's machine. It has two modes. In process
// mode (the default) every task runs one process, whose arguments are
// templated from the task's fields; in server mode one long-lived process,
// started once per executor when the first task comes, serves many tasks
// over JSON lines on its stdin and stdout, so a model loads once.
//
// A process reports progress and checkpoints in lines of its output
// (lines.go), leaves its results in an output directory (every file
// becomes an artifact), and ends with an exit code that classifies its
// failure. A process runs in a process group of its own that never
// outlives the worker: the group dies with the worker (Pdeathsig), and
// every started group is recorded in the state directory so that the next
// executor built on it (the worker's next start) or a Recover kills a
// group left behind by a worker killed with -9.
//
// The line format, the server protocol, the exit codes and the template
// names are documented in docs/executors.md ("Command").
package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
)

// Kind is the executor type name in the config file.
const Kind = "command"

// The modes of a command executor.
const (
	// ModeProcess runs one process per task.
	ModeProcess = "process"
	// ModeServer runs one long-lived process that serves many tasks.
	ModeServer = "server"
)

// Defaults of the settings.
const (
	// DefaultGrace is the time between SIGTERM and SIGKILL.
	DefaultGrace = 10 * time.Second
	// DefaultLogLines is how many lines of output an error quotes.
	DefaultLogLines = 20
	// DefaultMaxOutputBytes bounds one output or checkpoint file.
	DefaultMaxOutputBytes = 512 << 20
)

// Settings are a command executor's settings in the config file.
type Settings struct {
	// Mode is "process" (default: one process per task) or "server" (one
	// long-lived process serving every task over JSON lines).
	Mode string `json:"mode"`
	// Command is the program and its arguments. In process mode each
	// argument may hold templates ({{field}}, {{output_dir}}, …); a
	// relative program path with a slash is relative to the config
	// file's directory, a bare name is looked up in PATH.
	Command []string `json:"command"`
	// Dir is the working directory (relative: to the config file's
	// directory); empty: the task's work directory in process mode, the
	// state directory in server mode.
	Dir string `json:"dir"`
	// Env are environment variables added to the process's; values may
	// come from ${VAR} in the config file and, in process mode, hold
	// templates. They are never logged.
	Env map[string]string `json:"env"`
	// InheritEnv passes the worker's whole environment to the process;
	// otherwise it gets only PATH, HOME, LANG, LC_ALL, TMPDIR and USER
	// (the worker's may hold secrets such as its database URL).
	InheritEnv bool `json:"inherit_env"`
	// GraceSeconds is the time between SIGTERM and SIGKILL on a cancel
	// or timeout (default 10).
	GraceSeconds float64 `json:"grace_seconds"`
	// StateDir holds the tasks' work directories, the local checkpoint
	// copies and the record of started process groups (relative: to the
	// config file's directory); empty: DIR/command/NAME under the
	// process's data directory.
	StateDir string `json:"state_dir"`
	// LogLines is how many of the last output lines a failure quotes
	// (default 20).
	LogLines int `json:"log_lines"`
	// MaxOutputBytes bounds one output or checkpoint file (default 512
	// MiB); a larger one fails the task.
	MaxOutputBytes int64 `json:"max_output_bytes"`
	// Inputs (server mode) name the fields that hold input URLs: each is
	// read (our artifacts or a guarded fetch) into the task's input
	// directory and its path sent in the request's "inputs". In process
	// mode, {{input:FIELD}} does this in an argument.
	Inputs []string `json:"inputs"`
}

// Options are what an executor takes from the process rather than from
// its settings.
type Options struct {
	// Dir is the config file's directory; relative paths start there.
	Dir string
	// DataDir is the process's data directory, under which the state
	// directory is when the settings name none (empty: the system's
	// temporary directory).
	DataDir string
	// Logger receives the executor's logs (nil: discarded).
	Logger *slog.Logger
}

// Executor runs jobs as local processes.
type Executor struct {
	name    string
	s       Settings
	argv    []string // Command with the program path resolved
	dir     string   // working directory; "" for the per-job one
	grace   time.Duration
	state   string // state directory
	groups  *groups
	log     *slog.Logger
	machine string

	mu     sync.Mutex
	procs  map[string]*proc    // process mode, by external id
	reqs   map[string]*request // server mode, by external id
	server *server             // server mode: the running server, if any
	gen    int                 // server mode: servers started
	closed bool
}

var _ executor.Executor = (*Executor)(nil)
var _ executor.Pinger = (*Executor)(nil)

// New returns the command executor called name. It kills the process
// groups that executors of a worker that died left in the state
// directory.
func New(name string, s Settings, o Options) (*Executor, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	e := &Executor{name: name, s: s, grace: DefaultGrace, log: o.Logger, procs: map[string]*proc{}, reqs: map[string]*request{}, machine: machineID()}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if s.GraceSeconds > 0 {
		e.grace = time.Duration(s.GraceSeconds * float64(time.Second))
	}
	e.argv = append([]string(nil), s.Command...)
	if p := s.Command[0]; filepath.Base(p) != p && !filepath.IsAbs(p) {
		e.argv[0] = filepath.Join(o.Dir, p)
	}
	if s.Dir != "" {
		e.dir = relTo(o.Dir, s.Dir)
	}
	switch {
	case s.StateDir != "":
		e.state = relTo(o.Dir, s.StateDir)
	case o.DataDir != "":
		e.state = filepath.Join(o.DataDir, "command", name)
	default:
		e.state = filepath.Join(os.TempDir(), "compute-command", name)
	}
	// The paths a process is handed (work, input and output directories)
	// must mean the same from its working directory as from ours.
	abs, err := filepath.Abs(e.state)
	if err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	e.state = abs
	for _, d := range []string{"jobs", "checkpoints"} {
		if err := os.MkdirAll(filepath.Join(e.state, d), 0o700); err != nil {
			return nil, fmt.Errorf("state_dir: %w", err)
		}
	}
	g, err := openGroups(filepath.Join(e.state, "groups"), e.machine)
	if err != nil {
		return nil, fmt.Errorf("state_dir: %w", err)
	}
	e.groups = g
	for _, k := range g.killOrphans() {
		e.log.Warn("killed a process group left by a worker that died", "executor", name, "pgid", k)
	}
	return e, nil
}

func (s *Settings) validate() error {
	switch s.Mode {
	case "":
		s.Mode = ModeProcess
	case ModeProcess, ModeServer:
	default:
		return fmt.Errorf("mode must be %q or %q, is %q", ModeProcess, ModeServer, s.Mode)
	}
	switch {
	case len(s.Command) == 0 || s.Command[0] == "":
		return errors.New("command is required: [program, arguments…]")
	case s.GraceSeconds < 0:
		return errors.New("grace_seconds must not be negative")
	case s.LogLines < 0:
		return errors.New("log_lines must not be negative")
	case s.MaxOutputBytes < 0:
		return errors.New("max_output_bytes must not be negative")
	}
	if s.LogLines == 0 {
		s.LogLines = DefaultLogLines
	}
	if s.MaxOutputBytes == 0 {
		s.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if s.Mode == ModeServer {
		for _, a := range s.Command {
			if hasTemplate(a) {
				return fmt.Errorf("command: %q: a server's arguments are not templated (tasks reach it as requests)", a)
			}
		}
		for k, v := range s.Env {
			if hasTemplate(v) {
				return fmt.Errorf("env %s: a server's environment is not templated (tasks reach it as requests)", k)
			}
		}
	} else if len(s.Inputs) > 0 {
		return errors.New("inputs: only in server mode (process mode uses {{input:FIELD}} in an argument)")
	}
	return nil
}

func relTo(base, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(base, p)
}

// Name implements executor.Executor.
func (e *Executor) Name() string { return e.name }

// Ping implements executor.Pinger: the program can be found and executed.
func (e *Executor) Ping(context.Context) error {
	if _, err := exec.LookPath(e.argv[0]); err != nil {
		return executor.Errorf(executor.ProviderUnavailable, "command: program %s: %w", e.s.Command[0], err)
	}
	return nil
}

// Start implements executor.Executor: in process mode it starts the
// task's process; in server mode it sends the task to the server,
// starting the server first when none runs.
func (e *Executor) Start(ctx context.Context, job *executor.Job) (executor.Handle, error) {
	if e.s.Mode == ModeServer {
		return e.startRequest(ctx, job)
	}
	return e.startProcess(ctx, job)
}

// Wait implements executor.Executor.
func (e *Executor) Wait(ctx context.Context, job *executor.Job, h executor.Handle, r executor.Reporter) (*executor.Output, error) {
	if e.s.Mode == ModeServer {
		return e.waitRequest(ctx, job, h, r)
	}
	return e.waitProcess(ctx, job, h, r)
}

// Cancel implements executor.Executor: a process is sent SIGTERM, then
// SIGKILL after the grace; a server is sent a cancel request for the
// task.
func (e *Executor) Cancel(ctx context.Context, h executor.Handle) error {
	if e.s.Mode == ModeServer {
		return e.cancelRequest(ctx, h)
	}
	return e.cancelProcess(h)
}

// Recover implements executor.Executor. A job of this executor's own
// process (a run that lost its claim and came back) is re-attached to. A
// job started by a worker that died cannot be: its process group, when
// it still runs on this machine, is killed, and the job is lost (Execute
// starts it afresh, handing it its last checkpoint).
func (e *Executor) Recover(_ context.Context, _ *executor.Job, h executor.Handle) (executor.Handle, error) {
	if h.Version != executor.HandleVersion {
		return h, executor.Errorf(executor.Lost, "handle version %d is not %d", h.Version, executor.HandleVersion)
	}
	e.mu.Lock()
	_, ours := e.procs[h.ExternalID]
	_, served := e.reqs[h.ExternalID]
	e.mu.Unlock()
	if served {
		ours = true
	}
	if ours {
		return h, nil
	}
	if st, err := parseState(h); err == nil && st.PGID > 0 && e.machine != "" && st.Machine == e.machine {
		if killGroupIf(st.PGID, st.Start) {
			e.log.Warn("killed the process group of a job whose worker died", "executor", e.name, "pgid", st.PGID)
		}
	}
	return h, executor.Errorf(executor.Lost, "job %s ran in a worker process that ended", h.ExternalID)
}

// Close stops every process the executor started (SIGTERM, then SIGKILL
// after the grace) and waits for them. The executor starts none after.
func (e *Executor) Close() {
	e.mu.Lock()
	e.closed = true
	procs := make([]*proc, 0, len(e.procs))
	for _, p := range e.procs {
		procs = append(procs, p)
	}
	srv := e.server
	e.mu.Unlock()
	for _, p := range procs {
		p.g.terminate(e.grace)
	}
	for _, p := range procs {
		<-p.done
	}
	if srv != nil {
		srv.stop(e.grace)
	}
}

// state is the executor's part of a job's handle (Handle.State).
type state struct {
	// Mode is the executor's mode when the job started.
	Mode string `json:"mode"`
	// Machine identifies the machine (boot and pid namespace) the
	// process group runs on; PGID and Start (the leader's start time in
	// clock ticks since boot) identify the group there.
	Machine string `json:"machine,omitempty"`
	PGID    int    `json:"pgid,omitempty"`
	Start   uint64 `json:"start,omitempty"`
	// Checkpoint is the job's last checkpoint, stored as an artifact.
	Checkpoint *checkpointRef `json:"checkpoint,omitempty"`
}

// checkpointRef names a stored checkpoint.
type checkpointRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
	URL  string `json:"url,omitempty"`
}

func parseState(h executor.Handle) (state, error) {
	var st state
	if len(h.State) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(h.State, &st); err != nil {
		return st, fmt.Errorf("decoding the handle's state: %w", err)
	}
	return st, nil
}

func (st state) raw() json.RawMessage {
	b, _ := json.Marshal(st) // plain fields: cannot fail
	return b
}
