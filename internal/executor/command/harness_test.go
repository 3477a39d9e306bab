package command_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
	"github.com/computeserver/compute/internal/executor/executortest"
)

// harnessScript is the process the harness runs: $1 is the behaviour,
// $2 and $3 the fifos of a held job (it says it runs on $2, then waits
// for a line on $3), $4 the output directory.
const harnessScript = `echo "PROGRESS 10 starting"
case "$1" in
  invalid_input) echo "the prompt is empty" >&2; exit 2 ;;
  provider_error) echo "CUDA error: an illegal memory access"; exit 1 ;;
  provider_unavailable) echo "no GPU is free"; exit 75 ;;
  safety_blocked) exit 3 ;;
  hold) echo running > "$2"; read line < "$3" ;;
esac
echo "PROGRESS 60 writing"
printf 'result of %s' "$1" > "$4/result.txt"
echo "PROGRESS 100 done"
`

// bridge connects an executortest.Gate to a held job's fifos: the job
// writes a line to running when it runs and reads one from release to
// finish. Both are opened read-write here, so the job's opens never block
// and a line written stays in the pipe until read.
func bridge(t *testing.T, g *executortest.Gate) (running, release string) {
	t.Helper()
	dir := t.TempDir()
	running, release = filepath.Join(dir, "running"), filepath.Join(dir, "release")
	for _, p := range []string{running, release} {
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rf, err := os.OpenFile(running, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	wf, err := os.OpenFile(release, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64)
		if _, err := rf.Read(buf); err != nil {
			return
		}
		g.Running()
		if g.Wait(ctx) == nil {
			_, _ = wf.Write([]byte("go\n"))
		}
	}()
	t.Cleanup(func() {
		stop()
		_ = rf.Close() // unblocks the read
		wg.Wait()
		_ = wf.Close()
	})
	return running, release
}

// restarts builds executors for the harness: a second executor of one
// test stands for the worker's next start, so the previous one is closed
// first (its processes die with it, as with a real worker).
type restarts struct {
	mu   sync.Mutex
	prev map[*testing.T]*command.Executor
}

func (r *restarts) next(t *testing.T, s command.Settings) *command.Executor {
	r.mu.Lock()
	prev := r.prev[t]
	r.mu.Unlock()
	if prev != nil {
		prev.Close()
	}
	ex := newExecutor(t, s)
	r.mu.Lock()
	r.prev[t] = ex
	r.mu.Unlock()
	return ex
}

// TestHarness runs the executor harness on command in process mode: each
// job is a /bin/sh script whose exit code makes its failure class. A job
// dies with its worker, so recovery reports it lost and Execute starts it
// afresh. The program is taken away (renamed) to make the executor
// unavailable.
func TestHarness(t *testing.T) {
	t.Parallel()
	prog := script(t, harnessScript)
	state := t.TempDir()
	r := &restarts{prev: map[*testing.T]*command.Executor{}}
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor {
			return r.next(t, command.Settings{
				Command:  []string{prog, "{{behaviour}}", "{{running}}", "{{release}}", "{{output_dir}}"},
				StateDir: state,
			})
		},
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			fields := map[string]any{"behaviour": "ok", "running": "", "release": ""}
			if b.Fail != "" {
				fields["behaviour"] = string(b.Fail)
			}
			if b.Hold != nil {
				fields["behaviour"] = "hold"
				fields["running"], fields["release"] = bridge(t, b.Hold)
			}
			j := newRec().job(t, fields)
			j.Put, j.SaveHandle = nil, nil // the harness records
			return j
		},
		Failures: []executor.Category{executor.InvalidInput, executor.ProviderError, executor.ProviderUnavailable, executor.SafetyBlocked},
		SetAvailable: func(t *testing.T, up bool) {
			from, to := prog, prog+".off"
			if up {
				from, to = to, from
			}
			if err := os.Rename(from, to); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestHarnessServer runs the executor harness on command in server mode:
// the server is this test binary as a helper (server_helper_test.go),
// which fails a task with the category it is asked for and holds one on
// fifos like the process-mode script.
func TestHarnessServer(t *testing.T) {
	t.Parallel()
	prog := filepath.Join(t.TempDir(), "server")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(self, prog); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	r := &restarts{prev: map[*testing.T]*command.Executor{}}
	executortest.Run(t, executortest.Adapter{
		New: func(t *testing.T) executor.Executor {
			return r.next(t, command.Settings{Mode: command.ModeServer, Command: []string{prog},
				Env: map[string]string{helperEnv: "server"}, StateDir: state})
		},
		Job: func(t *testing.T, b executortest.Behaviour) *executor.Job {
			fields := map[string]any{"behaviour": "ok"}
			if b.Fail != "" {
				fields["behaviour"], fields["category"] = "fail", string(b.Fail)
			}
			if b.Hold != nil {
				fields["behaviour"] = "hold"
				fields["running"], fields["release"] = bridge(t, b.Hold)
			}
			j := newRec().job(t, fields)
			j.Put, j.SaveHandle = nil, nil
			return j
		},
		Failures: []executor.Category{executor.InvalidInput, executor.ProviderError, executor.ProviderUnavailable, executor.SafetyBlocked},
		SetAvailable: func(t *testing.T, up bool) {
			from, to := prog, prog+".off"
			if up {
				from, to = to, from
			}
			if err := os.Rename(from, to); err != nil {
				t.Fatal(err)
			}
		},
	})
}
