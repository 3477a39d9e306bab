//go:build unix

package api_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor/comfyui/comfyfake"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

// TestBatchMemberRecovered: `compute serve` submits three generation
// tasks as one batched ComfyUI prompt and is killed (SIGKILL) while the
// prompt runs; restarted on the same data directory, it recovers each
// member from its saved handle: the prompt is not submitted again and
// every task completes with its own image of the batch. On SQLite and
// PostgreSQL.
func TestBatchMemberRecovered(t *testing.T) {
	t.Parallel()
	bin := buildCompute(t, t.TempDir())
	for _, d := range testdb.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"COMPUTE_API_KEY": adminKey, "COMPUTE_WORKERS": "4", "COMPUTE_LOG_LEVEL": "debug"}
			if d == "postgres" {
				vars["DATABASE_URL"] = testdb.URL(t, "postgres")
			}
			fake := comfyfake.StartT(t, comfyfake.Options{})
			dir := t.TempDir()
			batchWorkflows(t, dir, fake.URL(), "{}") // the templates
			config := fmt.Sprintf(`executors:
  gpu:
    type: comfyui
    servers: [{url: %q, slots: 1}]
    workflows: workflows
    defaults: {generation: txt2img}
    poll_interval: 50ms
    batch: {max_size: 3, max_wait: 10s}
`, fake.URL())
			if err := os.WriteFile(filepath.Join(dir, "compute.yaml"), []byte(config), 0o644); err != nil {
				t.Fatal(err)
			}
			vars["COMPUTE_CONFIG"] = filepath.Join(dir, "compute.yaml")
			vars["COMPUTE_DATA_DIR"] = filepath.Join(dir, "data")

			fake.Pause()
			defer fake.Resume()
			first, e := serve(t, bin, vars)
			var ids []string
			for range 3 {
				m := e.must(201, "POST", "/api/v1/tasks/generation", map[string]any{"prompt": "a linen dress", "width": 64, "height": 64})
				ids = append(ids, fmt.Sprint(m["id"]))
			}
			waitFor(t, fake, "the batch's prompt to run", func(s comfyfake.Stats) bool { return s.Running != "" })
			prompt := fake.Stats().Running
			for _, id := range ids { // every member's handle is saved before the prompt is sent
				if m := e.must(200, "GET", "/api/v1/tasks/"+id, nil); m["comfy_prompt_id"] != prompt {
					t.Fatalf("task %s: comfy_prompt_id %v, want the batch's prompt %s", id, m["comfy_prompt_id"], prompt)
				}
			}
			if err := first.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-first.exited

			_, e = serve(t, bin, vars)
			fake.Resume()
			places := map[string]bool{}
			images := map[string]bool{}
			for _, id := range ids {
				done := e.waitStatus(id, "completed", "failed", "cancelled")
				if done["status"] != "completed" {
					t.Fatalf("task %s ended %v: %v", id, done["status"], done["error_message"])
				}
				if done["is_resumed"] != true || done["comfy_prompt_id"] != prompt {
					t.Errorf("task %s: is_resumed %v, prompt %v; want resumed on the batch's prompt", id, done["is_resumed"], done["comfy_prompt_id"])
				}
				res := e.must(200, "GET", "/api/v1/tasks/"+id+"/result", nil)
				data, _ := res["result"].(map[string]any)["data"].(map[string]any)
				places[fmt.Sprint(data["batch_index"], "/", data["batch_size"])] = true
				images[fmt.Sprint(done["result_image_path"])] = true
			}
			if len(places) != 3 || len(images) != 3 {
				t.Errorf("places %v, images %v; want three of each", places, images)
			}
			if st := fake.Stats(); len(st.Submissions) != 1 || st.Submissions[prompt] != 1 {
				t.Errorf("submissions %v, want the batch's prompt once", st.Submissions)
			}
		})
	}
}

// serve starts `compute serve` with vars on a free loopback port and waits
// until it is ready.
func serve(t *testing.T, bin string, vars map[string]string) (*computeProc, *env) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	all := map[string]string{"COMPUTE_ADDR": addr}
	for k, v := range vars {
		all[k] = v
	}
	p := startCompute(t, bin, "serve", all)
	base := "http://" + addr
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if res, err := http.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("compute serve did not become ready: %s", p.out.String())
		}
	}
	return p, &env{t: t, base: base}
}

// waitFor waits until the fake's stats satisfy cond.
func waitFor(t *testing.T, fake *comfyfake.Server, what string, cond func(comfyfake.Stats) bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(fake.Stats()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: stats %+v", what, fake.Stats())
		}
	}
}
