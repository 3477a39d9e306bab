package apidocs_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/chromium"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

// TestPageRendersTheDocument loads /docs of a real server in headless
// Chromium and checks the DOM its scripts built: a section for every
// operation and every component schema of the served /openapi.json, and
// generated examples.
func TestPageRendersTheDocument(t *testing.T) {
	t.Parallel()
	bin := chromium.Path(t)
	cfg := testserver.Config(t, "sqlite", "docs-test-key-0123456789")
	cfg.Workers = 0
	srv := testserver.Start(t, cfg, app.Options{Version: "test"}, nil)

	res, err := http.Get(srv.Base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /openapi.json: %d %v", res.StatusCode, err)
	}
	var doc struct {
		Paths      map[string]map[string]struct{ OperationID string } `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=20000", "--dump-dom", srv.Base+"/docs")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v; stderr: %s", err, tail(stderr.String()))
	}
	dom := string(out)
	if strings.Contains(dom, "data-error=") {
		t.Fatalf("the page reports an error: %s", tail(dom))
	}
	ops := 0
	for path, item := range doc.Paths {
		for method, op := range item {
			ops++
			if !strings.Contains(dom, `id="op-`+op.OperationID+`"`) {
				t.Errorf("no section for %s %s (%s)", method, path, op.OperationID)
			}
		}
	}
	if !strings.Contains(dom, `data-rendered="`+strconv.Itoa(ops)+`"`) {
		t.Errorf("the page did not render the document's %d operations", ops)
	}
	for name := range doc.Components.Schemas {
		if !strings.Contains(dom, `id="schema-`+name+`"`) {
			t.Errorf("no section for schema %s", name)
		}
	}
	for _, want := range []string{
		`curl -X POST "$COMPUTE_URL/api/v1/tasks/"`, // the create example
		`-d '{"task_type":"`,                        // the union's example names its variant
		`Chosen by <code>task_type</code>`,          // the discriminator of TaskCreate
		`href="#schema-TaskCreate"`,                 // links to schemas
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered page lacks %s", want)
		}
	}
	// The key is asked for where the document requires it, only there.
	if s := section(t, dom, "op-get-task"); !strings.Contains(s, `Authorization: Bearer $COMPUTE_API_KEY`) {
		t.Errorf("get-task's example sends no key: %s", s)
	}
	if s := section(t, dom, "op-healthz"); strings.Contains(s, "Authorization") || strings.Contains(s, `class="lock"`) {
		t.Errorf("healthz's section asks for a key: %s", s)
	}
}

// section returns the rendered section whose id is id.
func section(t *testing.T, dom, id string) string {
	t.Helper()
	_, after, ok := strings.Cut(dom, `id="`+id+`"`)
	if !ok {
		t.Fatalf("no section %s", id)
	}
	s, _, _ := strings.Cut(after, "</section>")
	return s
}

func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}
