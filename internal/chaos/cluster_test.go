//go:build unix

package chaos

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The compute and comfyfake binaries are built once per test run, without
// -race, into a temporary directory that TestMain removes.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	buildTook time.Duration
)

// computeBinary returns the path of the compute binary built from this
// module's ./cmd/compute, building it on first use.
func computeBinary(t *testing.T) string {
	t.Helper()
	return binary(t, "compute")
}

// comfyfakeBinary returns the path of the fake ComfyUI server built from
// this module's ./cmd/comfyfake, building it on first use.
func comfyfakeBinary(t *testing.T) string {
	t.Helper()
	return binary(t, "comfyfake")
}

// binary returns the path of the built command name, building both
// commands on first use.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		buildErr = build()
		buildTook = time.Since(start)
	})
	if buildErr != nil {
		t.Fatalf("building the binaries: %v", buildErr)
	}
	return filepath.Join(buildDir, name)
}

func build() error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("go env GOMOD: not inside a module")
	}
	if buildDir, err = os.MkdirTemp("", "compute-chaos-"); err != nil {
		return err
	}
	// With several packages, -o names a directory: one binary each.
	cmd := exec.Command("go", "build", "-o", buildDir+string(filepath.Separator), "./cmd/compute", "./cmd/comfyfake")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/compute ./cmd/comfyfake: %w\n%s", err, out)
	}
	return nil
}

// cluster starts `compute worker` processes with one environment and makes
// sure none outlives the test: its cleanup kills, by pid, every process it
// started that is still running.
type cluster struct {
	t      *testing.T
	bin    string
	env    []string
	logDir string

	mu    sync.Mutex
	procs []*proc
	seq   map[string]int
}

// proc is one started worker process.
type proc struct {
	name    string
	logPath string
	ready   string // the log message that says it works
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed

	mu       sync.Mutex
	expected bool // the test signalled it to end
}

// newCluster returns a cluster running bin with the environment of the
// test process minus the server's own variables, plus vars. The workers'
// logs are kept in COMPUTE_CHAOS_LOG_DIR when it is set.
func newCluster(t *testing.T, bin string, vars map[string]string) *cluster {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "COMPUTE_") || k == "DATABASE_URL" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	logDir := t.TempDir()
	if keep := os.Getenv("COMPUTE_CHAOS_LOG_DIR"); keep != "" {
		// Keep the worker logs for a look after the test.
		logDir = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_")+"-"+time.Now().Format("150405"))
		if err := os.MkdirAll(logDir, 0o750); err != nil {
			t.Fatalf("creating the log directory: %v", err)
		}
		t.Logf("worker logs in %s", logDir)
	}
	c := &cluster{t: t, bin: bin, env: env, logDir: logDir, seq: map[string]int{}}
	t.Cleanup(c.killAll)
	return c
}

// readyMsg is the message each role logs once it works.
var readyMsg = map[string]string{"worker": "working", "api": "serving"}

// start starts a worker process; its output goes to <name>.<n>.log.
func (c *cluster) start(name string) *proc {
	c.t.Helper()
	return c.startRole(name, "worker")
}

// startRole starts `compute <role>`; its output goes to <name>.<n>.log.
func (c *cluster) startRole(name, role string) *proc {
	c.t.Helper()
	return c.startProgram(name, readyMsg[role], c.bin, role)
}

// startProgram starts bin with args and the cluster's environment; its
// output goes to <name>.<n>.log, and ready is the message of the JSON log
// line that says it works (waitReady).
func (c *cluster) startProgram(name, ready, bin string, args ...string) *proc {
	c.t.Helper()
	c.mu.Lock()
	c.seq[name]++
	path := filepath.Join(c.logDir, fmt.Sprintf("%s.%02d.log", name, c.seq[name]))
	c.mu.Unlock()
	f, err := os.Create(path)
	if err != nil {
		c.t.Fatalf("creating the log of %s: %v", name, err)
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Env = c.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{name: filepath.Base(path), logPath: path, ready: ready, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p
}

// pid is the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		p.mu.Lock()
		p.expected = true
		p.mu.Unlock()
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to %s (pid %d): %v\n%s", sig, p.name, p.pid(), err, tail(p.logPath, 20))
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) still running 10s after SIGKILL", p.name, p.pid())
	}
}

// terminate sends SIGTERM and waits up to grace for a clean exit.
func (p *proc) terminate(t *testing.T, grace time.Duration) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM\n%s", p.name, p.waitErr, tail(p.logPath, 20))
		}
	case <-time.After(grace):
		t.Errorf("%s (pid %d) still running %s after SIGTERM; killing it\n%s", p.name, p.pid(), grace, tail(p.logPath, 20))
		p.kill(t)
	}
}

// checkAlive fails the test when a process ended without being told to.
func (p *proc) checkAlive(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		p.mu.Lock()
		expected := p.expected
		p.mu.Unlock()
		if !expected {
			t.Fatalf("%s (pid %d) exited on its own: %v\n%s", p.name, p.pid(), p.waitErr, tail(p.logPath, 30))
		}
	default:
	}
}

// waitReady waits until the process logs that it works, and returns that
// log line.
func (p *proc) waitReady(t *testing.T, timeout time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.checkAlive(t)
		for _, l := range readLines(p.logPath) {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == p.ready {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not start working within %s\n%s", p.name, timeout, tail(p.logPath, 30))
	return nil
}

// instance is the engine instance the process logged when it started
// working ("" before that).
func (p *proc) instance() string {
	for _, l := range readLines(p.logPath) {
		var m struct {
			Msg      string `json:"msg"`
			Instance string `json:"instance"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.Msg == p.ready {
			return m.Instance
		}
	}
	return ""
}

// killAll kills every process still running; it is the cluster's cleanup.
func (c *cluster) killAll() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.exited:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped process must run to die
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			c.t.Errorf("%s (pid %d) survived SIGKILL", p.name, p.pid())
		}
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
}

// dumpLogs writes the error lines of every worker log and the tail of the
// last log of each worker to the test log.
func (c *cluster) dumpLogs() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	for _, p := range procs {
		lines := readLines(p.logPath)
		var errs []string
		for _, l := range lines {
			if strings.Contains(l, `"level":"ERROR"`) || !strings.HasPrefix(l, "{") {
				errs = append(errs, l)
			}
		}
		if len(errs) > 20 {
			errs = errs[len(errs)-20:]
		}
		c.t.Logf("--- %s (pid %d): %d lines, errors and non-log output:\n%s\n--- tail:\n%s",
			p.name, p.pid(), len(lines), strings.Join(errs, "\n"), tail(p.logPath, 10))
	}
}

// logs returns every log file the cluster's processes wrote.
func (c *cluster) logs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.procs))
	for i, p := range c.procs {
		out[i] = p.logPath
	}
	return out
}

// started counts the processes started.
func (c *cluster) started() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.procs)
}

func readLines(path string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func tail(path string, n int) string {
	lines := readLines(path)
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logLine is the part of a worker's JSON log line the checks read.
type logLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Msg     string    `json:"msg"`
	TaskID  string    `json:"task_id"`
	Attempt int       `json:"attempt"`
	Outcome string    `json:"outcome"`
	Reason  any       `json:"reason"`
	Error   any       `json:"error"`
	// Requeued, Resumed and Failed count a rescue's tasks.
	Requeued int    `json:"requeued"`
	Resumed  int    `json:"resumed"`
	Failed   int    `json:"failed"`
	File     string `json:"-"`
}

// readLog parses the JSON lines of the worker logs. A process killed
// mid-write can leave a torn last line; lines that do not parse are
// skipped.
func readLog(paths []string) []logLine {
	var out []logLine
	for _, path := range paths {
		for _, l := range readLines(path) {
			var ll logLine
			if json.Unmarshal([]byte(l), &ll) == nil && ll.Msg != "" {
				ll.File = filepath.Base(path)
				out = append(out, ll)
			}
		}
	}
	return out
}
