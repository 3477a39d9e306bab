package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/testutil/logbuf"
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
					Result struct {
						Artifacts []struct{ URL string }
						Output    struct {
							Images []struct {
								URL           string
								Width, Height int
							}
						}
					}
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
				// The original clients' shape names the same image.
				if im := res.Result.Output.Images; len(im) != 1 || im[0].URL != public+path || im[0].Width != 64 || im[0].Height != 64 {
					t.Errorf("output.images %+v, want the one 64x64 artifact at %q", im, public+path)
				}
				if code := call(t, "GET", srv.Base+path, "", nil); code != 200 {
					t.Errorf("downloading the artifact from the API process: %d", code)
				}
			})
		}
	}
}

// pngServer serves a small PNG at /in.png on loopback.
func pngServer(t *testing.T) string {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(buf.Bytes())
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/in.png"
}

// TestInputCIDRAllowList: COMPUTE_ALLOW_PRIVATE_CIDRS lets task inputs come
// from its ranges while other private addresses stay refused, and a
// refusal names both settings that would allow the address.
func TestInputCIDRAllowList(t *testing.T) {
	t.Parallel()
	input := pngServer(t)
	tests := []struct {
		name       string
		cidrs      []string
		wantStatus string
	}{
		{name: "default refuses loopback", wantStatus: "failed"},
		{name: "another range stays refused", cidrs: []string{"10.0.0.0/8"}, wantStatus: "failed"},
		{name: "its range is allowed", cidrs: []string{"10.0.0.0/8", "127.0.0.1/32"}, wantStatus: "completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, "sqlite", key)
			for _, c := range tt.cidrs {
				cfg.AllowPrivateCIDRs = append(cfg.AllowPrivateCIDRs, netip.MustParsePrefix(c))
			}
			srv := testserver.Start(t, cfg, app.Options{Workers: true, Version: "test"}, testdb.Logger(t))
			var created struct{ ID string }
			body := `{"task_type":"image_adjuster","image_url":"` + input + `","brightness":10}`
			if code := call(t, "POST", srv.Base+"/api/v1/tasks/", body, &created); code != 201 {
				t.Fatalf("create: %d", code)
			}
			var got struct {
				Status       string `json:"status"`
				ErrorMessage string `json:"error_message"`
			}
			for deadline := time.Now().Add(20 * time.Second); got.Status != "completed" && got.Status != "failed"; time.Sleep(50 * time.Millisecond) {
				if code := call(t, "GET", srv.Base+"/api/v1/tasks/"+created.ID, "", &got); code != 200 || time.Now().After(deadline) {
					t.Fatalf("get: %d, status %q", code, got.Status)
				}
			}
			if got.Status != tt.wantStatus {
				t.Fatalf("task %s (%s), want %s", got.Status, got.ErrorMessage, tt.wantStatus)
			}
			if got.Status == "failed" {
				for _, want := range []string{"COMPUTE_ALLOW_PRIVATE_URLS=true", "COMPUTE_ALLOW_PRIVATE_CIDRS"} {
					if !strings.Contains(got.ErrorMessage, want) {
						t.Errorf("error %q does not name %s", got.ErrorMessage, want)
					}
				}
			}
		})
	}
}

// TestShutdownWaitsAreLogged: on shutdown, a process says what it waits
// for (requests in flight, running tasks within the grace) and when it is
// done, in both roles that run tasks.
func TestShutdownWaitsAreLogged(t *testing.T) {
	t.Parallel()
	for _, role := range []string{"serve", "worker"} {
		t.Run(role, func(t *testing.T) {
			t.Parallel()
			cfg := testserver.Config(t, "sqlite", key)
			var logs logbuf.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a, err := app.New(ctx, cfg, app.Options{Workers: true, NoAPI: role == "worker", Version: "test"}, logs.Logger())
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			var ln net.Listener
			if role == "serve" {
				if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- a.Serve(ctx, ln) }()
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "msg=serving") && !strings.Contains(logs.String(), "msg=working"); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("not started:\n%s", logs.String())
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			want := []string{`msg="stopping the workers: no new tasks; running ones may finish" grace=2s`, `msg="workers stopped" waited=`}
			if role == "serve" {
				want = append(want, `msg="shutting down: refusing new requests, waiting for those in flight" timeout=10s`, `msg="requests done" waited=`)
			}
			out := logs.String()
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("logs lack %s:\n%s", w, out)
				}
			}
		})
	}
}
