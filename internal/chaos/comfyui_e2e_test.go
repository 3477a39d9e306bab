//go:build unix

package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// The fakes' timing: every executed node reports fakeSteps progress steps,
// fakeStepDelay apart, so a node takes about half a second, the two-node
// "quick" template a second and the six-node "slow" one three: long
// enough to find a prompt running and strike at it.
const (
	fakeSteps     = 5
	fakeStepDelay = 100 * time.Millisecond
	// e2eLease is the workers' COMPUTE_LEASE.
	e2eLease = 3 * time.Second
	// downAfter is the executor's down_after: how long a server running a
	// prompt may be silent before the prompt moves to another server.
	downAfter = 1500 * time.Millisecond
	// phaseTimeout bounds the wait for each phase's tasks to end.
	phaseTimeout = 30 * time.Second
	// e2eBudget bounds the whole test, the build of the binaries apart.
	e2eBudget = 90 * time.Second
)

// e2eTemplates are the executor's workflow templates: API-format graphs of
// the model-free nodes the fake runs (reference/executors.md §1.4). The
// seed is the empty image's colour, so every task's graph differs and no
// node is served from the fake's cache (§1.7 caching).
var e2eTemplates = map[string]string{
	"quick": `{
  "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": "{{seed}}"}},
  "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prompt}}"}}
}`,
	"slow": `{
  "1": {"class_type": "EmptyImage", "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1, "color": "{{seed}}"}},
  "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
  "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
  "4": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
  "5": {"class_type": "ImageInvert", "inputs": {"image": ["4", 0]}},
  "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "{{prompt}}"}}
}`,
}

// TestComfyUIEndToEnd runs the comfyui executor through the real binaries
// (issue 11, "Prove it"): two `comfyfake` processes, one slot each in the
// config file, `compute api` and two `compute worker` processes on a fresh
// PostgreSQL schema, sharing a data directory for the artifacts. In turn:
//  1. ten generation tasks complete with PNGs readable through the API, and
//     neither server ever held two prompts at once;
//  2. the server running a task is killed: the task completes on the
//     other, and its comfyui_retry_server_urls and progress stage name the
//     dead server;
//  3. the worker running a task is killed with SIGKILL and restarted: the
//     task is recovered by its prompt id, which the server received once;
//  4. a running task is cancelled through the API: the server receives
//     the interrupt for its prompt; the latency is logged.
func TestComfyUIEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	t.Parallel()
	dsn := testdb.URL(t, "postgres")
	bin := computeBinary(t)
	begin := time.Now()
	openStore(t, dsn) // migrated, with the API key stored
	dir := t.TempDir()
	x := &e2e{t: t, ctx: context.Background(), dir: dir, deadline: begin.Add(e2eBudget)}
	x.c = newCluster(t, bin, map[string]string{
		"DATABASE_URL":           dsn,
		"COMPUTE_CONFIG":         filepath.Join(dir, "compute.yaml"),
		"COMPUTE_DATA_DIR":       filepath.Join(dir, "data"),
		"COMPUTE_ADDR":           "127.0.0.1:0",
		"COMPUTE_API_KEY":        apiKey,
		"COMPUTE_LEASE":          e2eLease.String(),
		"COMPUTE_WORKERS":        "4",
		"COMPUTE_SHUTDOWN_GRACE": "1s",
		"COMPUTE_LOG_LEVEL":      "info",
		"COMPUTE_LOG_FORMAT":     "json",
	})
	x.fakes = []*fakeServer{x.startFake("gpu0", "127.0.0.1:0"), x.startFake("gpu1", "127.0.0.1:0")}
	x.writeConfig()
	api := x.c.startRole("api", "api")
	addr, _ := api.waitReady(t, 30*time.Second)["addr"].(string)
	x.api = newAPIClient(addr, apiKey)
	t.Cleanup(x.api.close)
	x.workers = []*proc{x.c.start("worker0"), x.c.start("worker1")}
	for _, w := range x.workers {
		w.waitReady(t, 30*time.Second)
	}
	started := time.Now()

	x.tenTasks()
	ten := time.Now()
	x.serverKilled()
	failover := time.Now()
	x.workerKilled()
	recovered := time.Now()
	latency := x.cancelRunning()
	done := time.Now()

	for _, p := range append([]*proc{api}, x.workers...) {
		p.checkAlive(t)
		p.terminate(t, 10*time.Second)
	}
	for _, f := range x.fakes {
		f.p.terminate(t, 10*time.Second)
	}
	if took := time.Since(begin); took > e2eBudget {
		t.Errorf("the test took %s, over its budget of %s", took.Round(time.Millisecond), e2eBudget)
	}
	t.Logf("build %s (shared), start %s, ten tasks %s, server killed %s, worker killed %s, cancel %s, total %s; cancel latency (API call to /interrupt received) %s",
		buildTook.Round(time.Millisecond), started.Sub(begin).Round(time.Millisecond), ten.Sub(started).Round(time.Millisecond),
		failover.Sub(ten).Round(time.Millisecond), recovered.Sub(failover).Round(time.Millisecond),
		done.Sub(recovered).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond), latency.Round(time.Microsecond))
}

// e2e is the running system of TestComfyUIEndToEnd.
type e2e struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	c       *cluster
	api     *apiClient
	fakes   []*fakeServer
	workers []*proc
	seed    int
	// deadline ends every wait: the test's time budget.
	deadline time.Time
}

// fakeServer is one comfyfake process.
type fakeServer struct {
	p    *proc
	name string
	url  string
	hc   *http.Client
}

// startFake starts a comfyfake process listening on addr with the control
// routes, and waits for the URL it prints.
func (x *e2e) startFake(name, addr string) *fakeServer {
	x.t.Helper()
	p := x.c.startProgram(name, "", comfyfakeBinary(x.t), "--addr", addr, "--control",
		"--steps", fmt.Sprint(fakeSteps), "--step-delay", fakeStepDelay.String())
	f := &fakeServer{p: p, name: name, hc: &http.Client{Timeout: 5 * time.Second}}
	x.t.Cleanup(f.hc.CloseIdleConnections)
	x.eventually(10*time.Second, name+" prints its URL", func() bool {
		p.checkAlive(x.t)
		if lines := readLines(p.logPath); len(lines) > 0 && strings.HasPrefix(lines[0], "http://") {
			f.url = strings.TrimSpace(lines[0])
		}
		return f.url != ""
	})
	return f
}

// stats reads what the fake recorded (GET /_comfyfake/stats).
func (f *fakeServer) stats(t *testing.T) comfyfake.Stats {
	t.Helper()
	var st comfyfake.Stats
	resp, err := f.hc.Get(f.url + "/_comfyfake/stats")
	if err != nil {
		t.Fatalf("reading the stats of %s: %v", f.name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading the stats of %s: %d %v", f.name, resp.StatusCode, err)
	}
	return st
}

// writeConfig writes the config file every process reads: one comfyui
// executor, gpu, over the fakes with one slot each, and its templates.
func (x *e2e) writeConfig() {
	x.t.Helper()
	wf := filepath.Join(x.dir, "workflows")
	if err := os.MkdirAll(wf, 0o750); err != nil {
		x.t.Fatal(err)
	}
	for name, graph := range e2eTemplates {
		if err := os.WriteFile(filepath.Join(wf, name+".json"), []byte(graph), 0o600); err != nil {
			x.t.Fatal(err)
		}
	}
	var servers strings.Builder
	for _, f := range x.fakes {
		fmt.Fprintf(&servers, "      - {url: %q, slots: 1}\n", f.url)
	}
	cfg := fmt.Sprintf(`executors:
  gpu:
    type: comfyui
    servers:
%s    workflows: ./workflows
    defaults: {generation: quick}
    poll_interval: 200ms
    probe_interval: 1s
    down_after: %s
    request_timeout: 5s
`, servers.String(), downAfter)
	if err := os.WriteFile(filepath.Join(x.dir, "compute.yaml"), []byte(cfg), 0o600); err != nil {
		x.t.Fatal(err)
	}
}

// eventually polls cond every 20ms until it holds, failing the test after
// timeout or at the test's deadline. The processes under test are
// observed over HTTP and through their logs, so polling is the only way
// to wait for them.
func (x *e2e) eventually(timeout time.Duration, what string, cond func() bool) {
	x.t.Helper()
	deadline := time.Now().Add(timeout)
	if !x.deadline.IsZero() && x.deadline.Before(deadline) {
		deadline = x.deadline
	}
	for !cond() {
		if time.Now().After(deadline) {
			x.t.Fatalf("%s: not within %s (the test's budget is %s)", what, timeout, e2eBudget)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// create posts a generation task for the gpu executor with the template
// workflow and returns its id.
func (x *e2e) create(workflow string) string {
	x.t.Helper()
	x.seed++
	status, raw, err := x.api.call(x.ctx, http.MethodPost, "/api/v1/tasks/generation", map[string]any{
		"prompt": fmt.Sprintf("e2e-%d", x.seed), "width": 64, "height": 64, "seed": x.seed,
		"provider_type": "gpu", "comfy_workflow": workflow,
	})
	if err != nil || status != http.StatusCreated {
		x.t.Fatalf("creating a task: %d %v %s", status, err, raw)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		x.t.Fatalf("creating a task: %v: %s", err, raw)
	}
	return out.ID
}

// e2eTask is the part of a generation task the test reads.
type e2eTask struct {
	ID                 string   `json:"id"`
	Status             string   `json:"status"`
	ErrorMessage       string   `json:"error_message"`
	ExecutorInstance   string   `json:"executor_instance"`
	IsResumed          bool     `json:"is_resumed"`
	ResumeAttemptCount int      `json:"resume_attempt_count"`
	ComfyPromptID      string   `json:"comfy_prompt_id"`
	ComfyServerURL     string   `json:"comfy_server_url"`
	RetryServerURLs    []string `json:"comfyui_retry_server_urls"`
	Errors             []struct {
		Message  string `json:"message"`
		Category string `json:"category"`
	} `json:"errors"`
}

// get reads a task.
func (x *e2e) get(id string) e2eTask {
	x.t.Helper()
	var tk e2eTask
	x.getJSON("/api/v1/tasks/"+id, &tk)
	return tk
}

// getJSON reads path into v; anything but a 200 fails the test.
func (x *e2e) getJSON(path string, v any) {
	x.t.Helper()
	status, raw, err := x.api.call(x.ctx, http.MethodGet, path, nil)
	if err != nil || status != http.StatusOK {
		x.t.Fatalf("GET %s: %d %v %s", path, status, err, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		x.t.Fatalf("GET %s: %v: %s", path, err, raw)
	}
}

// waitEnd waits until every task is terminal and returns them.
func (x *e2e) waitEnd(ids ...string) []e2eTask {
	x.t.Helper()
	out := make([]e2eTask, len(ids))
	x.eventually(phaseTimeout, fmt.Sprintf("%d task(s) ending", len(ids)), func() bool {
		for i, id := range ids {
			if out[i] = x.get(id); !slices.Contains([]string{"completed", "failed", "cancelled"}, out[i].Status) {
				return false
			}
		}
		return true
	})
	return out
}

// completed fails the test unless tk completed.
func (x *e2e) completed(tk e2eTask) {
	x.t.Helper()
	if tk.Status != "completed" {
		x.t.Fatalf("task %s ended %s: %s", tk.ID, tk.Status, tk.ErrorMessage)
	}
}

// running waits until one fake runs the prompt of task id and returns
// that fake and the prompt id.
func (x *e2e) running(id string) (*fakeServer, string) {
	x.t.Helper()
	var (
		on     *fakeServer
		prompt string
	)
	x.eventually(phaseTimeout, "task "+id+" running on a server", func() bool {
		tk := x.get(id)
		if tk.ComfyPromptID == "" {
			return false
		}
		for _, f := range x.fakes {
			if f.stats(x.t).Running == tk.ComfyPromptID {
				on, prompt = f, tk.ComfyPromptID
				return true
			}
		}
		return false
	})
	return on, prompt
}

// tenTasks: ten tasks complete, each with a PNG readable through the API,
// each prompt submitted once, and no server ever held more prompts than
// its one slot.
func (x *e2e) tenTasks() {
	t := x.t
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = x.create("quick")
	}
	byServer := map[string]int{}
	for _, tk := range x.waitEnd(ids...) {
		x.completed(tk)
		byServer[tk.ComfyServerURL]++
		x.checkImage(tk.ID)
	}
	submitted := 0
	for _, f := range x.fakes {
		st := f.stats(t)
		for id, n := range st.Submissions {
			if n != 1 {
				t.Errorf("%s received prompt %s %d times", f.name, id, n)
			}
		}
		submitted += len(st.Submissions)
		if byServer[f.url] == 0 || len(st.Finished) != byServer[f.url] {
			t.Errorf("%s finished %d prompts; %d tasks name it as their server", f.name, len(st.Finished), byServer[f.url])
		}
		if st.MaxConcurrent > 1 {
			t.Errorf("%s ran %d prompts at once", f.name, st.MaxConcurrent)
		}
		// The slot count bounds the prompts a server holds, running plus
		// queued, across every worker process.
		if st.MaxQueued > 1 {
			t.Errorf("%s held %d prompts at once with one slot (slot accounting across worker processes)", f.name, st.MaxQueued)
		}
		t.Logf("%s: %d prompts, max running %d, max held %d", f.name, len(st.Finished), st.MaxConcurrent, st.MaxQueued)
	}
	if submitted != len(ids) {
		t.Errorf("the servers received %d prompts for %d tasks", submitted, len(ids))
	}
}

// checkImage reads the task's result and downloads its artifact: a 64×64
// PNG with the size and hash the result states.
func (x *e2e) checkImage(id string) {
	t := x.t
	t.Helper()
	var res struct {
		Result struct {
			Artifacts []struct {
				URL         string `json:"url"`
				ContentType string `json:"content_type"`
				Size        int    `json:"size"`
				SHA256      string `json:"sha256"`
			} `json:"artifacts"`
		} `json:"result"`
	}
	x.getJSON("/api/v1/tasks/"+id+"/result", &res)
	if len(res.Result.Artifacts) != 1 {
		t.Fatalf("task %s has %d artifacts, want 1", id, len(res.Result.Artifacts))
	}
	a := res.Result.Artifacts[0]
	path := a.URL
	if i := strings.Index(path, "/api/v1/"); i >= 0 {
		path = path[i:] // absolute or relative, it is served by every API process
	}
	status, body, err := x.api.call(x.ctx, http.MethodGet, path, nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("downloading %s: %d %v", a.URL, status, err)
	}
	sum := sha256.Sum256(body)
	if a.ContentType != "image/png" || len(body) != a.Size || hex.EncodeToString(sum[:]) != a.SHA256 {
		t.Errorf("artifact %s: %s, %d bytes (hash %x); the result says %s, %d bytes (hash %s)", a.URL, a.ContentType, len(body), sum, a.ContentType, a.Size, a.SHA256)
	}
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("artifact %s is no PNG: %v", a.URL, err)
	}
	if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 64 {
		t.Errorf("artifact %s is %dx%d, want 64x64", a.URL, b.Dx(), b.Dy())
	}
}

// serverKilled: the server running a task is killed; the task completes on
// the other server, its comfyui_retry_server_urls and a progress stage
// name the dead server. The dead server is then started again on its
// address, a fresh ComfyUI with an empty queue and history.
func (x *e2e) serverKilled() {
	t := x.t
	id := x.create("slow")
	dead, prompt := x.running(id)
	other := x.fakes[0]
	if other == dead {
		other = x.fakes[1]
	}
	dead.p.kill(t)
	tk := x.waitEnd(id)[0]
	x.completed(tk)
	if tk.ComfyServerURL != other.url || !slices.Equal(tk.RetryServerURLs, []string{dead.url}) {
		t.Errorf("after %s died: comfy_server_url %s, comfyui_retry_server_urls %v; want %s and [%s]",
			dead.name, tk.ComfyServerURL, tk.RetryServerURLs, other.url, dead.url)
	}
	if tk.ComfyPromptID == prompt {
		t.Errorf("the task completed with the dead server's prompt %s", prompt)
	}
	if n := other.stats(t).Submissions[tk.ComfyPromptID]; n != 1 {
		t.Errorf("%s received the moved prompt %s %d times, want 1", other.name, tk.ComfyPromptID, n)
	}
	named := false
	for _, e := range tk.Errors {
		named = named || (strings.Contains(e.Message, dead.url) && e.Category == "provider_unavailable")
	}
	if !named {
		t.Errorf("the errors of task %s %+v do not name the dead server %s", id, tk.Errors, dead.url)
	}
	if stage := x.stageNaming(id, dead.url); stage == "" {
		t.Errorf("no progress stage of task %s names the dead server %s", id, dead.url)
	} else {
		t.Logf("failover stage: %s", stage)
	}
	x.checkImage(id)

	_, port, err := net.SplitHostPort(strings.TrimPrefix(dead.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(x.fakes, dead)
	x.fakes[i] = x.startFake(dead.name, "127.0.0.1:"+port)
	if x.fakes[i].url != dead.url {
		t.Fatalf("%s came back at %s, not %s", dead.name, x.fakes[i].url, dead.url)
	}
}

// stageNaming replays the task's events (the stream ends after its
// terminal event) and returns the first progress stage containing s.
func (x *e2e) stageNaming(id, s string) string {
	x.t.Helper()
	status, raw, err := x.api.call(x.ctx, http.MethodGet, "/api/v1/tasks/"+id+"/events", nil)
	if err != nil || status != http.StatusOK {
		x.t.Fatalf("reading the events of %s: %d %v", id, status, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Metadata struct {
				Stage string `json:"stage"`
			} `json:"metadata"`
		}
		if json.Unmarshal([]byte(data), &ev) == nil && strings.Contains(ev.Metadata.Stage, s) {
			return ev.Metadata.Stage
		}
	}
	return ""
}

// workerKilled: the worker running a task is killed with SIGKILL and
// started again on the same data directory, whose instance identity it
// takes; the task is recovered by its prompt id and completes, and the
// server received that prompt once.
func (x *e2e) workerKilled() {
	t := x.t
	id := x.create("slow")
	on, prompt := x.running(id)
	tk := x.get(id)
	i := slices.IndexFunc(x.workers, func(p *proc) bool { return p.instance() == tk.ExecutorInstance })
	if i < 0 {
		t.Fatalf("no worker is instance %q", tk.ExecutorInstance)
	}
	name := fmt.Sprintf("worker%d", i)
	x.workers[i].kill(t)
	x.workers[i] = x.c.start(name)
	x.workers[i].waitReady(t, 30*time.Second)
	tk = x.waitEnd(id)[0]
	x.completed(tk)
	if tk.ComfyPromptID != prompt || tk.ComfyServerURL != on.url || len(tk.RetryServerURLs) != 0 {
		t.Errorf("recovered task: prompt %s on %s (tried %v), want prompt %s on %s", tk.ComfyPromptID, tk.ComfyServerURL, tk.RetryServerURLs, prompt, on.url)
	}
	if !tk.IsResumed || tk.ResumeAttemptCount != 1 || len(tk.Errors) != 1 || tk.Errors[0].Category != "lost" {
		t.Errorf("recovered task: is_resumed %v, resume_attempt_count %d, errors %+v; want true, 1 and the lost run", tk.IsResumed, tk.ResumeAttemptCount, tk.Errors)
	} else {
		t.Logf("the lost run: %s", tk.Errors[0].Message)
	}
	st := on.stats(t)
	if n := st.Submissions[prompt]; n != 1 {
		t.Errorf("%s received prompt %s %d times, want once (recovered, not resubmitted)", on.name, prompt, n)
	}
	if !slices.Contains(st.Finished, prompt) {
		t.Errorf("%s never finished prompt %s", on.name, prompt)
	}
	t.Logf("worker %s killed running prompt %s on %s; recovered by instance %s", name, prompt, on.name, tk.ExecutorInstance)
	x.checkImage(id)
}

// cancelRunning: a running task is cancelled through the API; the server
// running its prompt receives POST /interrupt for it, and the task ends
// cancelled. It returns the time from the API call to the interrupt's
// arrival at the server.
func (x *e2e) cancelRunning() time.Duration {
	t := x.t
	id := x.create("slow")
	on, prompt := x.running(id)
	sent := time.Now()
	status, raw, err := x.api.call(x.ctx, http.MethodPost, "/api/v1/tasks/"+id+"/cancel", nil)
	answered := time.Since(sent)
	if err != nil || status != http.StatusOK {
		t.Fatalf("cancelling %s: %d %v %s", id, status, err, raw)
	}
	var got comfyfake.Interrupt
	x.eventually(10*time.Second, "the interrupt of prompt "+prompt+" reaching "+on.name, func() bool {
		for _, in := range on.stats(t).Interrupts {
			if in.PromptID == prompt {
				got = in
				return true
			}
		}
		return false
	})
	if !got.Applied || got.Running != prompt {
		t.Errorf("interrupt %+v: want it to stop the running prompt %s", got, prompt)
	}
	if tk := x.waitEnd(id)[0]; tk.Status != "cancelled" {
		t.Errorf("cancelled task ended %s: %s", tk.Status, tk.ErrorMessage)
	}
	latency := got.At.Sub(sent)
	t.Logf("cancel: the API answered in %s; %s received POST /interrupt for prompt %s %s after the call",
		answered.Round(time.Microsecond), on.name, prompt, latency.Round(time.Microsecond))
	return latency
}
