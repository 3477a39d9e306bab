package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/computeserver/compute/internal/event"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testredis"
)

// buildCompute builds the compute binary (without -race) into dir.
func buildCompute(t testing.TB, dir string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(dir, "compute")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/compute")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/compute: %v\n%s", err, out)
	}
	return bin
}

// lockedBuffer is a process's output, safe to read while it writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// computeProc is one compute process the test started.
type computeProc struct {
	role   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

// startCompute starts `compute <role>` with the test process's environment
// minus the server's variables, plus vars. The process is stopped (SIGTERM,
// then SIGKILL) by pid when the test ends, and its output logged on
// failure.
func startCompute(t testing.TB, bin, role string, vars map[string]string) *computeProc {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "COMPUTE_") || k == "DATABASE_URL" || k == "REDIS_URL" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	p := &computeProc{role: role, out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, role)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting compute %s: %v", role, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("output of compute %s (pid %d):\n%s", role, p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// waitLog waits until the process's output contains all of parts on one
// line.
func (p *computeProc) waitLog(t testing.TB, limit time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, line := range strings.Split(p.out.String(), "\n") {
			ok := true
			for _, part := range parts {
				ok = ok && strings.Contains(line, part)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("compute %s logged no line with %q within %s", p.role, parts, limit)
		}
		select {
		case <-p.exited:
			t.Fatalf("compute %s exited: %s", p.role, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// cluster is an api process and a worker process sharing a fresh
// PostgreSQL schema and a Redis channel prefix.
type cluster struct {
	api, worker *computeProc
	base        string
	redisURL    string
	prefix      string
	env         *env // for the HTTP helpers; its app is nil
}

// startCluster starts `compute api` (migrating the schema), waits until it
// is ready, then starts `compute worker` with workers slots.
func startCluster(t *testing.T, bin string, workers string, withRedis bool) *cluster {
	t.Helper()
	dsn := testdb.URL(t, "postgres")
	c := &cluster{}
	common := map[string]string{"DATABASE_URL": dsn, "COMPUTE_API_KEY": adminKey, "COMPUTE_LOG_LEVEL": "debug"}
	if withRedis {
		c.redisURL, c.prefix = testredis.URL(t), testredis.Prefix(t)
		common["REDIS_URL"], common["COMPUTE_REDIS_PREFIX"] = c.redisURL, c.prefix
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range common {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c.base = "http://" + addr
	c.api = startCompute(t, bin, "api", with(map[string]string{"COMPUTE_ADDR": addr, "COMPUTE_DATA_DIR": t.TempDir()}))
	c.env = &env{t: t, base: c.base}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(c.base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("compute api did not become ready: %s", c.api.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.worker = startCompute(t, bin, "worker", with(map[string]string{"COMPUTE_WORKERS": workers, "COMPUTE_DATA_DIR": t.TempDir()}))
	c.worker.waitLog(t, 30*time.Second, "engine started")
	return c
}

// TestCrossProcess runs `compute api` and `compute worker` as two processes
// on PostgreSQL + Redis: a client streaming from the api process sees the
// events the worker commits within moments, and a cancel sent to the api
// process stops the processor in the worker process.
func TestCrossProcess(t *testing.T) {
	t.Parallel()
	testdb.URL(t, "postgres") // skips (or fails in CI) without PostgreSQL
	testredis.URL(t)
	bin := buildCompute(t, t.TempDir())
	c := startCluster(t, bin, "1", true)
	e := c.env

	t.Run("stream", func(t *testing.T) {
		e.t = t
		// What external consumers read: the worker's events on Redis.
		opts, _ := redis.ParseURL(c.redisURL)
		rc := redis.NewClient(opts)
		defer rc.Close()
		ps := rc.Subscribe(t.Context(), c.prefix+":events")
		defer ps.Close()
		if _, err := ps.Receive(t.Context()); err != nil {
			t.Fatal(err)
		}

		fire := e.openStream("/api/v1/events")
		created := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "across", "sleep_ms": 100})
		id := created["id"].(string)
		task := e.openStream("/api/v1/tasks/" + id + "/events")

		got := fire.until(isCompleted)
		var statuses []string
		for _, it := range got {
			b := it.body(t)
			statuses = append(statuses, string(b.Status))
			if b.TaskID.String() != id {
				t.Errorf("event of task %s, want %s", b.TaskID, id)
			}
			if b.Status != "pending" { // committed by the worker process
				lag := it.at.Sub(b.Timestamp)
				t.Logf("%s event read by the client %s after the worker's change began", b.Status, lag)
				if lag > 3*time.Second {
					t.Errorf("%s event arrived %s after its change", b.Status, lag)
				}
			}
		}
		if strings.Join(statuses, ",") != "pending,executing,completed" {
			t.Errorf("firehose statuses %v", statuses)
		}
		tgot := task.until(isCompleted)
		task.ends()
		if len(tgot) != 3 || tgot[0].id != got[0].id || tgot[2].id != got[2].id {
			t.Errorf("task stream ids %v, firehose %v", tgot, got)
		}

		seen := map[string]bool{}
		for len(seen) < 2 {
			ctx, cancel := context.WithTimeout(t.Context(), sseWait)
			msg, err := ps.ReceiveMessage(ctx)
			cancel()
			if err != nil {
				t.Fatalf("redis: %v (saw %v)", err, seen)
			}
			var m event.Message
			if err := json.Unmarshal([]byte(msg.Payload), &m); err != nil {
				t.Fatalf("redis message %s: %v", msg.Payload, err)
			}
			if m.TaskID.String() == id && m.Status != "pending" {
				seen[string(m.Status)] = true
			}
		}
		if !seen["executing"] || !seen["completed"] {
			t.Errorf("redis carried %v of the worker's events", seen)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		e.t = t
		long := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "long", "sleep_ms": 60000})
		id := long["id"].(string)
		s := e.openStream("/api/v1/tasks/" + id + "/events")
		s.until(func(it sseItem) bool { return statusOf(it) == "executing" })
		begin := time.Now()
		if got := e.must(200, "POST", "/api/v1/tasks/"+id+"/cancel", nil); got["status"] != "cancelled" {
			t.Fatalf("cancel = %v", got)
		}
		if it := s.next(); statusOf(it) != "cancelled" {
			t.Errorf("after the cancel the stream got %s", it.data)
		}
		s.ends()
		// The worker's processor stopped: its log says so, and its only
		// slot takes the next task at once.
		line := c.worker.waitLog(t, 10*time.Second, "run stopped", id, "reason=cancelled")
		t.Logf("worker, %s after the cancel: %s", time.Since(begin), line)
		quick := e.must(201, "POST", "/api/v1/tasks/", map[string]any{"task_type": "echo", "message": "next"})
		qs := e.openStream("/api/v1/tasks/" + quick["id"].(string) + "/events")
		qs.until(isCompleted)
		qs.ends()
		if took := time.Since(begin); took > 15*time.Second {
			t.Errorf("the next task completed %s after the cancel; the cancelled processor held the slot", took)
		}
		if got := e.must(200, "GET", "/api/v1/tasks/"+id, nil); got["status"] != "cancelled" {
			t.Errorf("the cancelled task is now %v", got["status"])
		}
	})
}
