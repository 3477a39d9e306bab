package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const key = "app-test-admin-key-0123456789"

// call sends a request with the admin key and decodes a JSON answer into
// out (when out is not nil); it returns the status code.
func call(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
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
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, url, res.StatusCode, raw, err)
		}
	}
	return res.StatusCode
}

// TestWorkerHandsOutRelativeURLs: a worker process has no address of its
// own, so without COMPUTE_PUBLIC_URL the artifact URLs it writes are
// relative, served by any API process; with it, they are under it.
func TestWorkerHandsOutRelativeURLs(t *testing.T) {
	t.Parallel()
	for _, dialect := range testdb.Dialects {
		for _, public := range []string{"", "https://compute.example.com/base"} {
			name := dialect + "/no public url"
			if public != "" {
				name = dialect + "/public url"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cfg := testserver.Config(t, dialect, key)
				cfg.PublicURL = public
				api := cfg
				api.Workers = 0
				srv := testserver.Start(t, api, app.Options{Version: "test"}, testdb.Logger(t))
				worker := cfg
				worker.Addr = "127.0.0.1:9000" // the default a worker used to build URLs from
				testserver.Start(t, worker, app.Options{Workers: true, NoAPI: true, Version: "test"}, testdb.Logger(t))

				var created struct{ ID string }
				if code := call(t, "POST", srv.Base+"/api/v1/tasks/", `{"task_type":"generation","prompt":"a dress","width":64,"height":64}`, &created); code != 201 {
					t.Fatalf("create: %d", code)
				}
				var res struct {
					Status string
					Result struct{ Artifacts []struct{ URL string } }
				}
				for deadline := time.Now().Add(20 * time.Second); res.Status != "completed"; time.Sleep(50 * time.Millisecond) {
					if code := call(t, "GET", srv.Base+"/api/v1/tasks/"+created.ID+"/result", "", &res); code != 200 || time.Now().After(deadline) {
						t.Fatalf("result: %d, status %q", code, res.Status)
					}
				}
				if len(res.Result.Artifacts) != 1 {
					t.Fatalf("artifacts %+v", res.Result.Artifacts)
				}
				path := "/api/v1/artifacts/tasks/" + created.ID + "/image.png"
				if got := res.Result.Artifacts[0].URL; got != public+path {
					t.Fatalf("artifact URL %q, want %q", got, public+path)
				}
				if code := call(t, "GET", srv.Base+path, "", nil); code != 200 {
					t.Errorf("downloading the artifact from the API process: %d", code)
				}
			})
		}
	}
}
