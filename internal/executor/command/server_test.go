package command_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
	"github.com/computeserver/compute/internal/task"
)

// newServer builds a server-mode executor running the helper server,
// which records its starts in the returned file.
func newServer(t *testing.T) (*command.Executor, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	starts := filepath.Join(t.TempDir(), "starts")
	return newExecutor(t, command.Settings{Mode: command.ModeServer, Command: []string{self},
		Env: map[string]string{helperEnv: "server", startsEnv: starts}}), starts
}

// starts counts the helper server's starts.
func starts(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

type ended struct {
	out *executor.Output
	err error
	rec *rec
}

// run starts a job of behaviour on ex and waits for it in a goroutine.
func run(t *testing.T, ex *command.Executor, c context.Context, behaviour string) (executor.Handle, <-chan ended) {
	t.Helper()
	r := newRec()
	j := r.job(t, map[string]any{"behaviour": behaviour})
	h, err := ex.Start(c, j)
	if err != nil {
		t.Fatalf("Start %s: %v", behaviour, err)
	}
	done := make(chan ended, 1)
	go func() {
		out, err := ex.Wait(c, j, h, r)
		done <- ended{out, err, r}
	}()
	return h, done
}

func await(t *testing.T, done <-chan ended) ended {
	t.Helper()
	select {
	case e := <-done:
		return e
	case <-time.After(20 * time.Second):
		t.Fatal("Wait did not return")
		return ended{}
	}
}

// One server serves concurrent tasks: cancelling one leaves the other
// running to completion, and the server is started once.
func TestServerCancelOne(t *testing.T) {
	t.Parallel()
	ex, startsFile := newServer(t)
	c := ctxFor(t)
	victim, victimDone := run(t, ex, c, "wait_cancel")
	_, otherDone := run(t, ex, c, "after_cancel") // finishes only once a task was cancelled
	if err := ex.Cancel(c, victim); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	if e := await(t, victimDone); !executor.Is(e.err, executor.Cancelled) {
		t.Errorf("the cancelled task: %v, want cancelled", e.err)
	}
	e := await(t, otherDone)
	if e.err != nil {
		t.Fatalf("the other task: %v", e.err)
	}
	if got, _ := e.rec.file("result.txt"); got != "served after_cancel" {
		t.Errorf("the other task's output %q", got)
	}
	if e.out.Data["pid"] == nil || len(e.rec.progress) < 2 {
		t.Errorf("output data %v, progress %v", e.out.Data, e.rec.progress)
	}
	if n := starts(t, startsFile); n != 1 {
		t.Errorf("the server started %d times, want once", n)
	}
}

// When the server dies, its running tasks fail as provider_unavailable
// (retried), quoting its log; the next task starts a new server.
func TestServerCrash(t *testing.T) {
	t.Parallel()
	ex, startsFile := newServer(t)
	c := ctxFor(t)
	_, waiting := run(t, ex, c, "wait_cancel")
	_, crashing := run(t, ex, c, "crash")
	for _, done := range []<-chan ended{waiting, crashing} {
		e := await(t, done)
		if !executor.Is(e.err, executor.ProviderUnavailable) || task.IsPermanent(e.err) {
			t.Errorf("a task of the crashed server: %v, want a retryable provider_unavailable", e.err)
		}
		if e.err != nil && !strings.Contains(e.err.Error(), "loading the model") {
			t.Errorf("error %q does not quote the server's log", e.err)
		}
	}
	_, next := run(t, ex, c, "ok")
	if e := await(t, next); e.err != nil {
		t.Fatalf("a task after the crash: %v", e.err)
	}
	if n := starts(t, startsFile); n != 2 {
		t.Errorf("the server started %d times, want twice", n)
	}
}

// An error reply fails the task with the reply's category; an unknown
// category is a provider error.
func TestServerErrorReply(t *testing.T) {
	t.Parallel()
	ex, _ := newServer(t)
	for _, tc := range []struct{ category, want string }{
		{"invalid_input", "invalid_input"}, {"no_such_category", "provider_error"},
	} {
		r := newRec()
		j := r.job(t, map[string]any{"behaviour": "fail", "category": tc.category})
		_, err := executor.Execute(ctxFor(t), ex, j, r)
		if got := executor.CategoryOf(err); string(got) != tc.want {
			t.Errorf("category %s replied: %v, want %s", tc.category, err, tc.want)
		}
	}
}

// A relative data directory (COMPUTE_DATA_DIR=./data) with a working
// directory of the server's own: the paths in a request are absolute, so
// the server finds its task's directories from wherever it runs.
func TestServerRelativeDataDir(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A directory under the package's, named relative to it (a path
	// relative to a temporary directory's would climb to / and so mean
	// the same from anywhere).
	data, err := os.MkdirTemp(".", "reldata-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(data) })
	ex, err := command.New("cmd", command.Settings{Mode: command.ModeServer, Command: []string{self}, Dir: t.TempDir(),
		GraceSeconds: 2, Env: map[string]string{helperEnv: "server"}}, command.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ex.Close)
	_, done := run(t, ex, context.Background(), "ok")
	if e := await(t, done); e.err != nil || len(e.out.Artifacts) != 1 {
		t.Fatalf("out %+v, err %v; want the server's output file", e.out, e.err)
	}
}
