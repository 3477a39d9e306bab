package api_test

import (
	"bytes"
	"encoding/json"
	"image"
	"image/png"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testmodels"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// pipelineWait bounds the documented pipeline's run: the models load in
// their first task (a few seconds each) and run on a CPU shared with the
// other tests.
const pipelineWait = 5 * time.Minute

// documentedPipeline returns the body of the example pipeline as
// docs/workflows.md shows it (the -d '…' of its first curl), so that the
// test runs what a reader would paste.
func documentedPipeline(t *testing.T) map[string]any {
	t.Helper()
	doc, err := os.ReadFile("../../docs/workflows.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)## The example pipeline.*?curl -s -X POST \S+/api/v1/workflows/ .*? -d '(.*?)'`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/workflows.md has no curl creating the example pipeline")
	}
	var body map[string]any
	if err := json.Unmarshal(m[1], &body); err != nil {
		t.Fatalf("the documented body is not JSON: %v\n%s", err, m[1])
	}
	return body
}

// TestWorkflowDocumentedPipeline runs docs/workflows.md's example pipeline,
// generate → background_remove → refine, from one POST with "start": true,
// on an API process and a worker process sharing each database: the
// generation on the default executor (mock), the background removal and
// the upscale on the local models of `make models` (skipped without them,
// a failure under CI=true).
func TestWorkflowDocumentedPipeline(t *testing.T) {
	body := documentedPipeline(t)
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			cfg := testserver.Config(t, d, adminKey)
			testmodels.Link(t, cfg.DataDir)
			apiCfg := cfg
			apiCfg.Workers = 0
			api := testserver.Start(t, apiCfg, app.Options{Version: "test"}, testdb.Logger(t))
			testserver.Start(t, cfg, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))
			e := &env{t: t, base: api.Base, app: api.App}
			runDocumentedPipeline(t, e, body)
		})
	}
}

// TestWorkflowDocumentedPipelineBinary runs the example pipeline through
// the compute binary (go build), served on SQLite as `compute serve` with
// the models in its data directory.
func TestWorkflowDocumentedPipelineBinary(t *testing.T) {
	body := documentedPipeline(t)
	data := t.TempDir()
	testmodels.Link(t, data)
	bin := buildCompute(t, t.TempDir())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := startCompute(t, bin, "serve", map[string]string{"COMPUTE_DATA_DIR": data, "COMPUTE_API_KEY": adminKey, "COMPUTE_ADDR": addr})
	p.waitLog(t, 60*time.Second, "engine started")
	e := &env{t: t, base: "http://" + addr}
	deadline := time.Now().Add(30 * time.Second)
	for e.do("GET", "/readyz", nil).status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("compute serve is not ready: %s", p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	runDocumentedPipeline(t, e, body)
}

// runDocumentedPipeline posts body and checks the run: the workflow
// completes, each step ran exactly one task once, the cut-out has a
// transparent background, the refined image is twice its size, and the
// workflow's events arrived in order.
func runDocumentedPipeline(t *testing.T, e *env, body map[string]any) {
	t.Helper()
	events := e.openStream("/api/v1/events?task_type=workflow")
	m := e.must(201, "POST", "/api/v1/workflows/", body)
	id := m["id"].(string)
	if m["status"] != "running" {
		t.Fatalf("created %v, want it running (start: true)", m)
	}

	// The workflow's events, live, in order.
	var statuses []string
	deadline := time.Now().Add(pipelineWait)
	for !slices.Contains([]string{"completed", "failed", "cancelled"}, lastOf(statuses)) {
		it := events.itemBy(deadline)
		if it.eof {
			t.Fatalf("the event stream ended after %v", statuses)
		}
		if it.event != "workflow_status_update" {
			continue
		}
		var b struct {
			WorkflowID string `json:"workflow_id"`
			Status     string `json:"status"`
		}
		if err := json.Unmarshal([]byte(it.data), &b); err != nil || b.WorkflowID != id {
			t.Fatalf("workflow event %s (%v), want one of %s", it.data, err, id)
		}
		statuses = append(statuses, b.Status)
	}
	if want := []string{"pending", "running", "completed"}; !slices.Equal(statuses, want) {
		t.Fatalf("workflow events %v, want %v: %v", statuses, want, e.must(200, "GET", "/api/v1/workflows/"+id, nil))
	}
	m = e.must(200, "GET", "/api/v1/workflows/"+id, nil)
	if m["status"] != "completed" {
		t.Fatalf("workflow %v after its completed event", m)
	}

	// Each step ran exactly one task, once.
	steps := stepsByID(m)
	tasks := e.must(200, "GET", "/api/v1/tasks/?limit=100", nil)["items"].([]any)
	if len(tasks) != 3 {
		t.Errorf("%d tasks exist, want one per step", len(tasks))
	}
	results := map[string]map[string]any{}
	for step, typ := range map[string]string{"generate": "generation", "cutout": "background_remove", "refine": "refine"} {
		taskID, _ := steps[step]["task_id"].(string)
		if steps[step]["status"] != "completed" || taskID == "" {
			t.Fatalf("step %s: %v", step, steps[step])
		}
		got := e.must(200, "GET", "/api/v1/tasks/"+taskID, nil)
		if got["task_type"] != typ || got["status"] != "completed" {
			t.Errorf("step %s's task: %s %s, want a completed %s", step, got["task_type"], got["status"], typ)
		}
		if runs := e.runsOf(taskID); runs != 1 {
			t.Errorf("step %s's task started %d times, want once", step, runs)
		}
		results[step] = e.must(200, "GET", "/api/v1/tasks/"+taskID+"/result", nil)
	}
	if p := e.must(200, "GET", "/api/v1/tasks/"+steps["refine"]["task_id"].(string), nil)["provider_type"]; p != "models-tf" {
		t.Errorf("refine ran on %v, want the local model executor models-tf", p)
	}

	// The cut-out has a transparent background and an opaque subject.
	cutout := e.artifactImage(results["cutout"])
	transparent, opaque, all := 0, 0, 0
	b := cutout.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			_, _, _, a := cutout.At(x, y).RGBA()
			switch {
			case a < 0x1000:
				transparent++
			case a > 0xf000:
				opaque++
			}
			all++
		}
	}
	t.Logf("cut-out %v: %.1f %% transparent, %.1f %% opaque", b.Size(), 100*float64(transparent)/float64(all), 100*float64(opaque)/float64(all))
	if transparent < all/20 || opaque < all/20 {
		t.Errorf("the cut-out's alpha does not vary: %d transparent and %d opaque of %d pixels", transparent, opaque, all)
	}
	// The refined image is twice the cut-out's size.
	refined := e.artifactImage(results["refine"])
	if got, want := refined.Bounds().Size(), b.Size().Mul(2); got != want {
		t.Errorf("refined %v, want twice the cut-out's %v", got, b.Size())
	}
}

// runsOf counts the runs of a finished task: the executing status updates
// its event stream replays.
func (e *env) runsOf(id string) int {
	e.t.Helper()
	items := e.openStream("/api/v1/tasks/" + id + "/events").until(func(it sseItem) bool {
		return strings.HasSuffix(it.event, "_status_update") && slices.Contains([]string{"completed", "failed", "cancelled"}, statusOf(it))
	})
	runs := 0
	for _, it := range items {
		if strings.HasSuffix(it.event, "_status_update") && statusOf(it) == "executing" {
			runs++
		}
	}
	return runs
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// artifactImage downloads and decodes the first artifact of a task's
// result (GET /tasks/{id}/result), a PNG.
func (e *env) artifactImage(result map[string]any) image.Image {
	e.t.Helper()
	r, _ := result["result"].(map[string]any)
	arts, _ := r["artifacts"].([]any)
	if len(arts) == 0 {
		e.t.Fatalf("no artifact in %v", result)
	}
	url, _ := arts[0].(map[string]any)["url"].(string)
	res := e.do("GET", strings.TrimPrefix(url, e.base), nil)
	if res.status != 200 {
		e.t.Fatalf("GET %s: %d", url, res.status)
	}
	img, err := png.Decode(bytes.NewReader(res.body))
	if err != nil {
		e.t.Fatalf("decoding %s: %v", url, err)
	}
	return img
}
