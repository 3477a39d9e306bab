package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image/png"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run executes the command line in-process and returns stdout.
func run(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	root := newRoot(&stdout, &stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if stderr.Len() > 0 {
		t.Logf("stderr of %v:\n%s", args, stderr.String())
	}
	return stdout.String(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs `compute serve` in-process with the environment the test
// set, waits until /readyz answers on addr, and stops it when the test
// ends (failing it if serve returned an error).
func startServe(t *testing.T, addr string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := run(t, ctx, "serve"); done <- err }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	base := "http://" + addr
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		res, err := http.Get(base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server did not become ready")
		}
	}
}

// callAPI sends one request with key and returns the status and body (0
// when the request failed).
func callAPI(t *testing.T, base, key, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

// TestServeGeneratesPNG is the README's first run: serve on SQLite, create
// a generation task with curl's request, download the PNG it produced.
// TestServeGeneratesPNG runs the README's walk-through. The artifact URL
// keeps the host COMPUTE_ADDR names: localhost stays localhost (it used to
// become 127.0.0.1, the address the name resolved to).
func TestServeGeneratesPNG(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			_, port, err := net.SplitHostPort(freeAddr(t))
			if err != nil {
				t.Fatal(err)
			}
			servePNG(t, net.JoinHostPort(host, port))
		})
	}
}

// servePNG serves on addr, generates a PNG and downloads it from the
// artifact URL handed out, which must be under http://addr.
func servePNG(t *testing.T, addr string) {
	const key = "readme-key-0123456789"
	dir := t.TempDir()
	t.Setenv("COMPUTE_API_KEY", key)
	t.Setenv("COMPUTE_DATA_DIR", dir)
	t.Setenv("COMPUTE_ADDR", addr)
	base := startServe(t, addr)
	call := func(method, path, body string) (int, []byte) { return callAPI(t, base, key, method, path, body) }

	code, raw := call("POST", "/api/v1/tasks/", `{"task_type":"generation","prompt":"a red summer dress","seed":42,"width":512,"height":768}`)
	if code != 201 {
		t.Fatalf("create: %d %s", code, raw)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(raw, &created); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Status string
		Result struct {
			Artifacts []struct {
				URL         string `json:"url"`
				ContentType string `json:"content_type"`
			}
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, raw = call("GET", "/api/v1/tasks/"+created.ID+"/result", "")
		if code != 200 {
			t.Fatalf("result: %d %s", code, raw)
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatal(err)
		}
		if res.Status == "completed" || res.Status == "failed" || time.Now().After(deadline) {
			break
		}
	}
	if res.Status != "completed" || len(res.Result.Artifacts) != 1 {
		t.Fatalf("task ended %s: %s", res.Status, raw)
	}
	a := res.Result.Artifacts[0]
	if !strings.HasPrefix(a.URL, "http://"+addr+"/api/v1/artifacts/") || a.ContentType != "image/png" {
		t.Fatalf("artifact %+v", a)
	}
	code, img := call("GET", strings.TrimPrefix(a.URL, base), "")
	if code != 200 {
		t.Fatalf("download: %d %s", code, img)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	if cfg.Width != 512 || cfg.Height != 768 {
		t.Errorf("PNG is %dx%d, want 512x768", cfg.Width, cfg.Height)
	}
	if _, err := filepath.Glob(filepath.Join(dir, "compute.db")); err != nil {
		t.Error(err)
	}
}

func TestAPIKeyCreatePrintsOnlyTheKey(t *testing.T) {
	t.Setenv("COMPUTE_DATA_DIR", t.TempDir())
	if _, err := run(t, context.Background(), "migrate", "up"); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, context.Background(), "apikey", "create", "--tenant", "acme")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "csk_") || len(lines[0]) < 40 {
		t.Fatalf("stdout %q, want one key", out)
	}
}

func TestMigrateUpAndStatus(t *testing.T) {
	t.Setenv("COMPUTE_DATA_DIR", t.TempDir())
	ctx := context.Background()
	if _, err := run(t, ctx, "migrate", "up"); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, ctx, "migrate", "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"core/", "task type echo/", "task type generation/", "task type image_adjuster/"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "pending") {
		t.Errorf("migrations still pending after up:\n%s", out)
	}
}

func TestOpenAPICommand(t *testing.T) {
	out, err := run(t, context.Background(), "openapi")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	for _, s := range []string{"TaskCreate", "TaskPublic", "TaskUpdate", "GenerationTaskCreate", "EchoTaskPublic", "ImageAdjusterTaskPublic"} {
		if doc.Components.Schemas[s] == nil {
			t.Errorf("schema %s missing", s)
		}
	}
}

func TestBadConfigIsAnError(t *testing.T) {
	t.Setenv("COMPUTE_WORKERS", "many")
	if _, err := run(t, context.Background(), "migrate", "status"); err == nil || !strings.Contains(err.Error(), "COMPUTE_WORKERS") {
		t.Fatalf("err = %v, want one naming COMPUTE_WORKERS", err)
	}
}

// TestConfigErrorsNameTheSettingAsGiven: a bad setting is named as the user
// gave it, the flag or the variable, never by the Go field behind it
// ("PublicURL (COMPUTE_PUBLIC_URL)", or "DATABASE_URL" for --database-url).
func TestConfigErrorsNameTheSettingAsGiven(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		want     string
		notWants []string
	}{
		{name: "public url variable", env: map[string]string{"COMPUTE_PUBLIC_URL": "x"}, args: []string{"migrate", "status"},
			want: `config: COMPUTE_PUBLIC_URL "x"`, notWants: []string{"PublicURL"}},
		{name: "workers variable", env: map[string]string{"COMPUTE_WORKERS": "10001"}, args: []string{"migrate", "status"},
			want: "config: COMPUTE_WORKERS must be", notWants: []string{"Workers ("}},
		{name: "workers flag", args: []string{"serve", "--workers", "10001"},
			want: "config: --workers must be", notWants: []string{"COMPUTE_WORKERS", "Workers ("}},
		{name: "database url flag", args: []string{"migrate", "status", "--database-url", "mysql://x"},
			want: "config: --database-url must be a postgres:// URL", notWants: []string{"DATABASE_URL"}},
		{name: "database url variable", env: map[string]string{"DATABASE_URL": "mysql://x"}, args: []string{"apikey", "list"},
			want: "config: DATABASE_URL must be a postgres:// URL"},
		{name: "addr flag", args: []string{"api", "--addr", "localhost"},
			want: `config: --addr "localhost"`, notWants: []string{"COMPUTE_ADDR", "Addr ("}},
		{name: "data dir flag", args: []string{"apikey", "list", "--data-dir", ""},
			want: "config: --data-dir must not be empty", notWants: []string{"DataDir"}},
		{name: "workers flag zero", args: []string{"worker", "--workers", "0"},
			want: "runs workers, but --workers is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("COMPUTE_DATA_DIR", t.TempDir())
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := run(t, context.Background(), tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v: err %v, want %q", tt.args, err, tt.want)
			}
			for _, nw := range tt.notWants {
				if strings.Contains(err.Error(), nw) {
					t.Errorf("%v: %q names %q, not the setting as given", tt.args, err, nw)
				}
			}
		})
	}
}

// TestBoundAddr: the announced address keeps the host as written and takes
// the bound port only for port 0.
func TestBoundAddr(t *testing.T) {
	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}
	tests := []struct{ name, written, want string }{
		{name: "name kept", written: "localhost:9000", want: "localhost:9000"},
		{name: "port 0 with a name", written: "localhost:0", want: "localhost:41234"},
		{name: "port 0 with an address", written: "127.0.0.1:0", want: "127.0.0.1:41234"},
		{name: "every interface, port 0", written: ":0", want: ":41234"},
	}
	for _, tt := range tests {
		if got := boundAddr(tt.written, bound); got != tt.want {
			t.Errorf("%s: boundAddr(%q) = %q, want %q", tt.name, tt.written, got, tt.want)
		}
	}
}
