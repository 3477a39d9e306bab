package imagetask_test

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testmodels"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const serveKey = "imagetask-admin-key-0123456789abcdef"

// call sends a request with the admin key and returns the status and body.
func call(t *testing.T, method, url string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+serveKey)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, raw
}

// Without the local models (and no hosted executor), creating a task of a
// type that needs them is a 422 saying how to enable them; detail_enhancer
// runs on the local executor, and the mock is there when named.
func TestServeWithoutModels(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.Config(t, "sqlite", serveKey), app.Options{Workers: true, Version: "test"}, nil)
	for _, typ := range []string{"background_remove", "face_enhancer", "refine", "background_fix"} {
		body := map[string]any{"task_type": typ, "image_url": "https://example.com/a.png"}
		if typ == "background_fix" {
			body["background_color"] = "#ffffff"
		}
		status, raw := call(t, "POST", srv.Base+"/api/v1/tasks/", body)
		if status != http.StatusUnprocessableEntity || !strings.Contains(string(raw), "make models") || !strings.Contains(string(raw), "body.provider_type") {
			t.Errorf("%s: %d %s, want a 422 at body.provider_type naming make models", typ, status, raw)
		}
		body["provider_type"] = "mock"
		if status, raw := call(t, "POST", srv.Base+"/api/v1/tasks/", body); status != http.StatusCreated {
			t.Errorf("%s on the mock: %d %s, want 201", typ, status, raw)
		}
	}
	status, raw := call(t, "POST", srv.Base+"/api/v1/tasks/", map[string]any{"task_type": "detail_enhancer", "image_url": "https://example.com/a.png"})
	if status != http.StatusCreated || !strings.Contains(string(raw), `"provider_type":"local"`) {
		t.Errorf("detail_enhancer: %d %s, want 201 on local", status, raw)
	}
}

// With the models in its data directory, the embedded default (serve on
// SQLite, no config file) removes the portrait's background for real: the
// README's "Try it".
func TestServeRemovesABackground(t *testing.T) {
	t.Parallel()
	cfg := testserver.Config(t, "sqlite", serveKey)
	cfg.AllowPrivateURLs = true     // the image comes from a loopback server
	testmodels.Link(t, cfg.DataDir) // skips (or fails on CI) without the models
	srv := testserver.Start(t, cfg, app.Options{Workers: true, Version: "test"}, nil)
	images := httptest.NewServer(http.FileServer(http.Dir("testdata")))
	t.Cleanup(images.Close)

	status, raw := call(t, "POST", srv.Base+"/api/v1/tasks/", map[string]any{"task_type": "background_remove", "image_url": images.URL + "/astronaut.png"})
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, raw)
	}
	var created struct {
		ID           string `json:"id"`
		ProviderType string `json:"provider_type"`
	}
	if err := json.Unmarshal(raw, &created); err != nil || created.ProviderType != "models-bg" {
		t.Fatalf("created %s (%v), want provider_type models-bg", raw, err)
	}
	var result struct {
		Status string `json:"status"`
		Error  string `json:"error_message"`
		Result struct {
			Artifacts []struct {
				URL           string
				Width, Height int
			}
		}
	}
	deadline := time.Now().Add(4 * time.Minute)
	for {
		_, raw = call(t, "GET", srv.Base+"/api/v1/tasks/"+created.ID+"/result", nil)
		if err := json.Unmarshal(raw, &result); err != nil {
			t.Fatal(err)
		}
		if result.Status == "completed" || result.Status == "failed" || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if result.Status != "completed" || len(result.Result.Artifacts) == 0 {
		t.Fatalf("the task ended %s: %s", result.Status, raw)
	}
	a := result.Result.Artifacts[0]
	if a.Width != 512 || a.Height != 512 {
		t.Errorf("artifact %+v, want 512×512", a)
	}
	status, data := call(t, "GET", a.URL, nil)
	if status != http.StatusOK {
		t.Fatalf("download: %d", status)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if bg, fg := alpha(img, 5, 5), alpha(img, 256, 400); bg > 16 || fg < 240 {
		t.Errorf("alpha %d at the backdrop and %d on the subject, want ~0 and ~255", bg, fg)
	}
}
