package command_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/command"
	"github.com/computeserver/compute/internal/task"
)

// TestMain runs the test binary as a helper process (a server, or a
// worker to be killed with -9) when the environment asks for one.
func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "server":
		runServerHelper()
		os.Exit(0)
	case "worker":
		runWorkerHelper()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperEnv selects the helper the test binary runs as.
const helperEnv = "COMMAND_TEST_HELPER"

// script writes a /bin/sh script with body into a new directory and
// returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "run.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// newExecutor builds a command executor on a state directory of the test
// and closes it when the test ends.
func newExecutor(t *testing.T, s command.Settings) *command.Executor {
	t.Helper()
	if s.StateDir == "" {
		s.StateDir = t.TempDir()
	}
	if s.GraceSeconds == 0 {
		s.GraceSeconds = 2
	}
	ex, err := command.New("cmd", s, command.Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(ex.Close)
	return ex
}

// rec records a job's stored files, saved handles and progress.
type rec struct {
	mu       sync.Mutex
	files    map[string][]byte
	types    map[string]string
	handles  []executor.Handle
	progress []float64
	stages   []string
	reported chan string // every stage, when not nil
}

func newRec() *rec { return &rec{files: map[string][]byte{}, types: map[string]string{}} }

// job returns a job with fields whose Put and SaveHandle record into r.
func (r *rec) job(t *testing.T, fields map[string]any) *executor.Job {
	t.Helper()
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return &executor.Job{
		TaskID: uuid.New(), Type: "training", Attempt: 1, Operation: "train", Fields: raw,
		Put: func(_ context.Context, name, ct string, data []byte) (task.Artifact, error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.files[name], r.types[name] = append([]byte(nil), data...), ct
			return task.Artifact{Key: "tasks/t/" + name, URL: "http://artifacts.test/" + name, ContentType: ct, Size: int64(len(data))}, nil
		},
		SaveHandle: func(_ context.Context, h executor.Handle) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.handles = append(r.handles, h)
			return nil
		},
	}
}

// Progress implements executor.Reporter.
func (r *rec) Progress(_ context.Context, pct float64, stage string) error {
	r.mu.Lock()
	r.progress = append(r.progress, pct)
	r.stages = append(r.stages, stage)
	ch := r.reported
	r.mu.Unlock()
	if ch != nil {
		ch <- stage
	}
	return nil
}

func (r *rec) file(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.files[name]
	return string(b), ok
}

func (r *rec) lastHandle(t *testing.T) executor.Handle {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.handles) == 0 {
		t.Fatal("no handle was saved")
	}
	return r.handles[len(r.handles)-1]
}

// handleState is the part of a handle's state the tests read.
type handleState struct {
	PGID       int `json:"pgid"`
	Checkpoint *struct {
		Name, Key, URL string
	} `json:"checkpoint"`
}

func stateOf(t *testing.T, h executor.Handle) handleState {
	t.Helper()
	var st handleState
	if err := json.Unmarshal(h.State, &st); err != nil {
		t.Fatalf("handle state %s: %v", h.State, err)
	}
	return st
}

// gone reports whether process pid no longer runs (absent, or a zombie
// nobody reaped yet).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] == "Z"
}

// waitGone waits until process pid has ended: there is no event to wait
// on for a process that is not our child, so it checks /proc until a
// deadline.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !gone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// groupGone reports whether no live member of process group pgid is left.
func groupGone(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	if err == syscall.ESRCH {
		return true
	}
	// Zombies answer kill(0) until reaped: look for a live member.
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && pid > 0 {
			return false
		}
	}
	return true
}

// ctxFor is a context that ends with the test or after a minute.
func ctxFor(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return c
}
