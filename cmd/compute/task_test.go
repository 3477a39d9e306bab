package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/client"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const cliKey = "cli-test-admin-key-0123456789"

// cliServer runs a server for the client commands' tests, on SQLite, with
// the mock executor and "slow", a mock that sleeps 200 ms before each of
// its four progress steps.
func cliServer(t *testing.T) string {
	t.Helper()
	cfg := testserver.Config(t, "sqlite", cliKey)
	cfg.File = "cli-test.yaml"
	cfg.Executors = map[string]config.ExecutorEntry{
		"mock": {Type: "mock"}, "local": {Type: "local"},
		"slow": {Type: "mock", Settings: json.RawMessage(`{"step_delay":"200ms"}`)},
	}
	return testserver.Start(t, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t)).Base
}

// cliResult is what one command line did.
type cliResult struct {
	stdout, stderr string
	err            error
	code           int // the exit status main gives err
}

// cli runs `compute <args>` in-process against the server at base, with
// the key as --api-key, and returns its output and exit status.
func cli(t *testing.T, base string, args ...string) cliResult {
	t.Helper()
	if base != "" {
		args = append(args, "--url", base, "--api-key", cliKey)
	}
	return cliNoFlags(t, args...)
}

// cliNoFlags runs `compute <args>` as given.
func cliNoFlags(t *testing.T, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs(args)
	root.SetIn(strings.NewReader(""))
	err := root.ExecuteContext(t.Context())
	r := cliResult{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if err != nil {
		r.code = 1
		if ee := (*exitError)(nil); errors.As(err, &ee) {
			r.code = ee.code
		}
	}
	return r
}

// task decodes a task printed with -o json.
func (r cliResult) task(t *testing.T) *client.Task {
	t.Helper()
	var task client.Task
	if err := json.Unmarshal([]byte(r.stdout), &task); err != nil || task.ID == "" {
		t.Fatalf("not a task (%v): %s\nstderr: %s\nerror: %v", err, r.stdout, r.stderr, r.err)
	}
	return &task
}

// TestTaskCommands drives create, get, list, patch, cancel, retry and
// delete against a real server.
func TestTaskCommands(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	created := cli(t, base, "task", "create", "echo", "--field", "message=hello", "--field", "sleep_ms:=5",
		"--field", "run_at="+later, "--field", "entity_id=order-7", "-o", "json").task(t)
	var msg string
	var sleep int
	if created.Status != client.StatusPending || created.EntityID != "order-7" {
		t.Errorf("created %+v", created)
	}
	if _, err := created.Field("message", &msg); err != nil || msg != "hello" {
		t.Errorf("message %q %v", msg, err)
	}
	if _, err := created.Field("sleep_ms", &sleep); err != nil || sleep != 5 {
		t.Errorf("sleep_ms %d %v: --field k:=JSON is a number", sleep, err)
	}

	got := cli(t, base, "task", "get", created.ID)
	if got.err != nil || !strings.Contains(got.stdout, created.ID) || !strings.Contains(got.stdout, `"hello"`) {
		t.Errorf("get: %v\n%s", got.err, got.stdout)
	}

	patched := cli(t, base, "task", "patch", created.ID, "-f", "message=changed", "-f", "priority:=3", "-o", "json").task(t)
	if _, _ = patched.Field("message", &msg); msg != "changed" || patched.Priority != 3 {
		t.Errorf("patched %+v", patched)
	}

	list := cli(t, base, "task", "list", "--type", "echo", "--status", "pending", "--status", "failed", "-o", "json")
	var page client.TaskPage
	if err := json.Unmarshal([]byte(list.stdout), &page); err != nil || len(page.Items) != 1 || page.Items[0].ID != created.ID {
		t.Errorf("list: %v %s", err, list.stdout)
	}
	table := cli(t, base, "task", "list", "--limit", "5")
	if lines := strings.Split(strings.TrimSpace(table.stdout), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[1], created.ID) {
		t.Errorf("list table:\n%s", table.stdout)
	}

	if c := cli(t, base, "task", "cancel", created.ID, "-o", "json").task(t); c.Status != client.StatusCancelled {
		t.Errorf("cancelled %+v", c)
	}
	again := cli(t, base, "task", "cancel", created.ID)
	if again.code != exitRefused || !strings.Contains(again.err.Error(), "409") || !strings.Contains(again.err.Error(), "only pending or executing tasks can be cancelled") {
		t.Errorf("cancelling twice: exit %d, %v", again.code, again.err)
	}
	retried := cli(t, base, "task", "retry", created.ID, "-o", "json").task(t)
	if retried.Status != client.StatusPending {
		t.Errorf("retried %+v", retried)
	}
	if d := cli(t, base, "task", "delete", created.ID); d.code != exitRefused {
		t.Errorf("deleting a pending task: exit %d %v", d.code, d.err)
	}
	cli(t, base, "task", "cancel", created.ID)
	if d := cli(t, base, "task", "delete", created.ID); d.err != nil {
		t.Errorf("delete: %v", d.err)
	}
	if g := cli(t, base, "task", "get", created.ID); g.code != exitRefused || !strings.Contains(g.err.Error(), "404") {
		t.Errorf("get after delete: exit %d %v", g.code, g.err)
	}
}

// TestTaskCreateFromFile: --file (or standard input) gives the body,
// --field wins over it, and a task_type in it must match the argument.
func TestTaskCreateFromFile(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	file := filepath.Join(t.TempDir(), "body.json")
	if err := os.WriteFile(file, []byte(`{"message":"from the file","priority":2}`), 0o600); err != nil {
		t.Fatal(err)
	}
	task := cli(t, base, "task", "create", "echo", "--file", file, "-f", "priority:=4", "-o", "json").task(t)
	var msg string
	if _, _ = task.Field("message", &msg); msg != "from the file" || task.Priority != 4 {
		t.Errorf("created %+v", task)
	}
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs([]string{"task", "create", "echo", "--file", "-", "-o", "json", "--url", base, "--api-key", cliKey})
	root.SetIn(strings.NewReader(`{"message":"from stdin"}`))
	if err := root.ExecuteContext(t.Context()); err != nil || !strings.Contains(stdout.String(), `"from stdin"`) {
		t.Errorf("--file -: %v %s", err, stdout.String())
	}
	if r := cli(t, base, "task", "create", "echo", "--file", file, "-f", "task_type=generation"); r.code != exitUsage {
		t.Errorf("a body naming another type: exit %d %v", r.code, r.err)
	}
}

// TestTaskCreateInvalid: a body the server refuses is a clear message
// naming each field, exit status 4; bad command lines are usage errors,
// exit status 3.
func TestTaskCreateInvalid(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	r := cli(t, base, "task", "create", "generation", "--field", "prompt=a dress", "--field", "width:=12")
	if r.code != exitRefused {
		t.Fatalf("exit %d, %v", r.code, r.err)
	}
	want := "the server answered 422 Unprocessable Entity: validation failed\n" +
		"  body.width: expected number >= 64 (got 12)\n" +
		"  body.width: expected number to be a multiple of 8 (got 12)"
	if r.err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", r.err, want)
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"no type", []string{"task", "create"}},
		{"a field without =", []string{"task", "create", "echo", "--field", "message"}},
		{"a field that is not JSON", []string{"task", "create", "echo", "--field", "sleep_ms:=soon"}},
		{"an unknown flag", []string{"task", "get", "x", "--colour"}},
		{"a bad output", []string{"task", "list", "-o", "yaml"}},
		{"a missing file", []string{"task", "create", "echo", "--file", "/nonexistent/body.json"}},
	} {
		if r := cli(t, base, tt.args...); r.code != exitUsage {
			t.Errorf("%s: exit %d, %v", tt.name, r.code, r.err)
		}
	}
}

// TestTaskWatch: watch shows the progress from the event stream (one line
// per change when stderr is not a terminal) and exits with the task's
// outcome: 0 completed, 1 failed, 2 cancelled.
func TestTaskWatch(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	create := func(args ...string) string {
		return cli(t, base, append([]string{"task", "create", "-o", "json"}, args...)...).task(t).ID
	}
	t.Run("completed", func(t *testing.T) {
		t.Parallel()
		id := create("generation", "-f", "prompt=a dress", "-f", "width:=64", "-f", "height:=64", "-f", "provider_type=slow")
		r := cli(t, base, "task", "watch", id)
		if r.code != 0 {
			t.Fatalf("exit %d: %v", r.code, r.err)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		// Progress reports are throttled to one per 500 ms: some of the
		// four steps 200 ms apart are shown, with their stage.
		for _, want := range []string{"  0% pending\n", "  0% executing\n", "% executing: ", "100% completed"} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("progress lacks %q:\n%s", want, r.stderr)
			}
		}
		if !strings.HasPrefix(lines[len(lines)-1], "100% completed") || strings.Contains(r.stderr, "\r") {
			t.Errorf("progress, not on a terminal:\n%q", r.stderr)
		}
		if !strings.Contains(r.stdout, "completed") || !strings.Contains(r.stdout, "/api/v1/artifacts/tasks/"+id+"/image.png") {
			t.Errorf("the finished task:\n%s", r.stdout)
		}
	})
	t.Run("failed", func(t *testing.T) {
		t.Parallel()
		r := cli(t, base, "task", "create", "echo", "-f", "message=x", "-f", "fail_with=out of ink", "--watch")
		if r.code != exitFailed || !strings.Contains(r.err.Error(), "failed: out of ink (permanent)") || !strings.Contains(r.stderr, "failed: out of ink") {
			t.Errorf("exit %d, %v\n%s", r.code, r.err, r.stderr)
		}
	})
	t.Run("cancelled while watched", func(t *testing.T) {
		t.Parallel()
		id := create("echo", "-f", "message=x", "-f", "run_at="+later)
		done := make(chan cliResult, 1)
		go func() { done <- cliNoFlags(t, "task", "watch", id, "--url", base, "--api-key", cliKey) }()
		time.Sleep(300 * time.Millisecond) // the watch is following the stream
		if c := cli(t, base, "task", "cancel", id); c.err != nil {
			t.Fatal(c.err)
		}
		select {
		case r := <-done:
			if r.code != exitCancelled || !strings.Contains(r.stderr, "cancelled") {
				t.Errorf("exit %d, %v\n%s", r.code, r.err, r.stderr)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("watch did not end")
		}
	})
	t.Run("unknown task", func(t *testing.T) {
		t.Parallel()
		r := cli(t, base, "task", "watch", "01939a4e-0000-7000-8000-000000000000")
		if r.code != exitRefused || !strings.Contains(r.err.Error(), "404") {
			t.Errorf("exit %d, %v", r.code, r.err)
		}
	})
}

// TestProgressOnTerminal: on a terminal the line is redrawn in place: a
// carriage return, a bar of 30 cells, the line cleared after it, and a
// line end when the task is over.
func TestProgressOnTerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progress{w: &buf, tty: true}
	p.update(client.Event{EventType: "generation_status_update", Status: client.StatusExecuting})
	p.update(client.Event{EventType: "generation_progress_update", Status: client.StatusExecuting, Progress: 40,
		Metadata: map[string]any{"stage": "rendering"}})
	p.update(client.Event{EventType: "generation_progress_update", Status: client.StatusExecuting, Progress: 40,
		Metadata: map[string]any{"stage": "rendering"}}) // no change: not drawn again
	p.update(client.Event{EventType: "generation_status_update", Status: client.StatusCompleted, Progress: 100})
	p.done()
	want := "\r[..............................]   0% executing\x1b[K" +
		"\r[############..................]  40% executing: rendering\x1b[K" +
		"\r[##############################] 100% completed\x1b[K\n"
	if buf.String() != want {
		t.Errorf("drew\n%q\nwant\n%q", buf.String(), want)
	}
}

// TestTaskResultDownload: result --download saves a task's artifacts in a
// directory, checked against their size and sha256.
func TestTaskResultDownload(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	r := cli(t, base, "task", "create", "generation", "-f", "prompt=a hat", "-f", "width:=64", "-f", "height:=64", "--watch", "-o", "json")
	task := r.task(t)
	dir := filepath.Join(t.TempDir(), "out")
	d := cli(t, base, "task", "result", task.ID, "--download", dir)
	if d.err != nil {
		t.Fatal(d.err)
	}
	png, err := os.ReadFile(filepath.Join(dir, "image.png"))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) || int64(len(png)) != task.Result.Artifacts[0].Size {
		t.Errorf("image.png: %v, %d bytes", err, len(png))
	}
	if !strings.Contains(d.stdout, filepath.Join(dir, "image.png")) {
		t.Errorf("output: %s", d.stdout)
	}
	// A second download into the same directory keeps the file unless
	// told to replace it.
	if err := os.WriteFile(filepath.Join(dir, "image.png"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if again := cli(t, base, "task", "result", task.ID, "--download", dir); again.err == nil || !strings.Contains(again.err.Error(), "already exists") {
		t.Errorf("downloading over an existing file: %v", again.err)
	}
	if kept, _ := os.ReadFile(filepath.Join(dir, "image.png")); string(kept) != "mine" {
		t.Errorf("the existing image.png was replaced without --overwrite")
	}
	if again := cli(t, base, "task", "result", task.ID, "--download", dir, "--overwrite"); again.err != nil {
		t.Errorf("--overwrite: %v", again.err)
	}
	if png, _ := os.ReadFile(filepath.Join(dir, "image.png")); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("--overwrite did not replace image.png")
	}
	shown := cli(t, base, "task", "result", task.ID)
	if !strings.Contains(shown.stdout, "tasks/"+task.ID+"/image.png") || !strings.Contains(shown.stdout, "image/png") {
		t.Errorf("result:\n%s", shown.stdout)
	}
	pending := cli(t, base, "task", "create", "echo", "-f", "message=x", "-f", "run_at=2100-01-01T00:00:00Z", "-o", "json").task(t)
	if r := cli(t, base, "task", "result", pending.ID, "--download", dir); r.err == nil || !strings.Contains(r.err.Error(), "is pending") {
		t.Errorf("downloading a pending task's result: %v", r.err)
	}
}

// TestArtifactName: artifact names become plain file names in the
// download directory, whatever the server sends.
func TestArtifactName(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, want string }{
		{"tasks/0193/image.png", "image.png"},
		{"../../.bashrc", "bashrc"},
		{"tasks/x/..", "artifact-1"},
		{"tasks/x/", "artifact-1"},
		{`tasks\x\..\..\evil.exe`, "evil.exe"},
		{"tasks/x/a b;rm -rf.txt", "a_b_rm_-rf.txt"},
		{"tasks/x/\x00nul", "_nul"},
		{"tasks/x/été.png", "_t_.png"},
		{"tasks/x/" + strings.Repeat("a", 300) + ".png", strings.Repeat("a", 124) + ".png"},
	}
	for _, tt := range tests {
		if got := artifactName(tt.key, 0, map[string]bool{}); got != tt.want {
			t.Errorf("artifactName(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	used := map[string]bool{}
	if a, b := artifactName("x/out.png", 0, used), artifactName("y/out.png", 1, used); a != "out.png" || b != "2-out.png" {
		t.Errorf("two out.png: %q, %q", a, b)
	}
	// A prefixed name cannot collide with an artifact's own name.
	used = map[string]bool{}
	var names []string
	for i, k := range []string{"3-x.png", "x.png", "x.png", "2-x.png"} {
		names = append(names, artifactName(k, i, used))
	}
	if !slices.Equal(names, []string{"3-x.png", "x.png", "2-x.png", "2-2-x.png"}) {
		t.Errorf("names of 3-x.png, x.png, x.png, 2-x.png: %q", names)
	}
}

// TestWorkflowCommands: create from a file, started and watched to the
// end, then get and list.
func TestWorkflowCommands(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	file := filepath.Join(t.TempDir(), "wf.json")
	if err := os.WriteFile(file, []byte(`{"steps":[
		{"id":"first","task":{"task_type":"echo","message":"one"}},
		{"id":"second","depends_on":["first"],"task":{"task_type":"echo","message":"{{steps.first.data.message}} and two"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, base, "workflow", "create", "--file", file, "--start", "--watch")
	if r.code != 0 || !strings.Contains(r.stderr, "step second completed") || !strings.Contains(r.stdout, "completed") {
		t.Fatalf("exit %d, %v\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.stdout, r.stderr)
	}
	list := cli(t, base, "workflow", "list", "-o", "json")
	var page client.WorkflowPage
	if err := json.Unmarshal([]byte(list.stdout), &page); err != nil || len(page.Workflows) != 1 || page.Workflows[0].Status != "completed" {
		t.Fatalf("list: %v %s", err, list.stdout)
	}
	got := cli(t, base, "workflow", "get", page.Workflows[0].ID)
	if !strings.Contains(got.stdout, "STEP") || !strings.Contains(got.stdout, "second") {
		t.Errorf("get:\n%s", got.stdout)
	}
	if r := cli(t, base, "workflow", "start", page.Workflows[0].ID); r.code != exitRefused {
		t.Errorf("starting a finished workflow: exit %d %v", r.code, r.err)
	}
	bad := filepath.Join(t.TempDir(), "cycle.json")
	_ = os.WriteFile(bad, []byte(`{"steps":[{"id":"a","depends_on":["a"],"task":{"task_type":"echo","message":"x"}}]}`), 0o600)
	if r := cli(t, base, "workflow", "create", "--file", bad); r.code != exitRefused || !strings.Contains(r.err.Error(), "body.steps[0]") {
		t.Errorf("a cycle: exit %d %v", r.code, r.err)
	}
}

// TestClientUnreachable: a server that does not answer is exit status 5,
// naming the URL.
func TestClientUnreachable(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens there now
	r := cli(t, "http://"+addr, "task", "list")
	if r.code != exitServer || !strings.Contains(r.err.Error(), "cannot reach the server at http://"+addr) {
		t.Errorf("exit %d, %v", r.code, r.err)
	}
}

// TestWorkflowWatchSaysNotStarted: watching a workflow nobody started
// says how to start it instead of waiting in silence.
func TestWorkflowWatchSaysNotStarted(t *testing.T) {
	t.Parallel()
	base := cliServer(t)
	file := filepath.Join(t.TempDir(), "wf.json")
	if err := os.WriteFile(file, []byte(`{"steps":[{"id":"only","task":{"task_type":"echo","message":"one"}}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, base, "workflow", "create", "--file", file, "-o", "json")
	var w client.Workflow
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil || w.ID == "" {
		t.Fatalf("create: %v %s %v", err, r.stdout, r.err)
	}
	c, err := client.New(base, client.WithAPIKey(cliKey))
	if err != nil {
		t.Fatal(err)
	}
	// The watch waits for a start that never comes; its first read is
	// what matters.
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if err := watchWorkflow(ctx, c, w.ID, &stdout, &stderr, false); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("watching an unstarted workflow ended with %v", err)
	}
	if !strings.Contains(stderr.String(), "compute workflow start "+w.ID) {
		t.Errorf("the watch does not say how to start the workflow:\n%s", stderr.String())
	}
}
