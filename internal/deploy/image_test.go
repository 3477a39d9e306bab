package deploy_test

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const testKey = "deploy-test-admin-key-0123456789"

// TestImageBinary builds the binary as the Dockerfile does and checks it
// is static (no ELF interpreter, no shared libraries: it runs on
// distroless/static), carries the build's version, and serves as the
// image would: the image's CMD with its ENV, as its non-root user, on a
// data directory that user owns, healthy by the image's HEALTHCHECK.
func TestImageBinary(t *testing.T) {
	t.Parallel()
	bin := binary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is not static", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v (%v)", libs, err)
	}

	df := loadDockerfile(t)
	build, runtime := df.stages[0], df.stages[len(df.stages)-1]
	version := ""
	for _, in := range build.all("ARG") {
		if v, ok := strings.CutPrefix(in.args, "VERSION="); ok {
			version = v
		}
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || version == "" || !strings.Contains(string(out), version) {
		t.Errorf("compute --version: %q, %v; want the Dockerfile's VERSION %q", out, err, version)
	}

	cred := runAs(t)
	data := dataDir(t, cred)
	addr := freeAddr(t)
	env := imageEnv(t, runtime, map[string]string{"COMPUTE_ADDR": addr, "COMPUTE_DATA_DIR": data})
	env = append(env, "COMPUTE_API_KEY="+testKey)
	argv := append(imageEntrypoint(t, runtime, bin), runtime.all("CMD")[0].execForm(t)...)
	p := start(t, "serve", argv, env, cred)
	health := healthArgv(t, runtime, bin)
	waitFor(t, "the image's HEALTHCHECK", 60*time.Second, p, func(ctx context.Context) error {
		return runCheck(ctx, health, env, cred)
	})
	p.checkUser(t, cred)

	base := "http://" + addr
	id := createTask(t, base, `{"task_type":"echo","message":"from the image"}`)
	waitFor(t, "the echo task to complete", 60*time.Second, p, func(ctx context.Context) error {
		return taskStatus(ctx, base, id, "completed")
	})
	st, err := os.Stat(filepath.Join(data, "compute.db"))
	if err != nil {
		t.Fatalf("no SQLite database in the data directory: %v", err)
	}
	if cred != nil && st.Sys().(*syscall.Stat_t).Uid != cred.Uid {
		t.Errorf("compute.db belongs to uid %d, want %d", st.Sys().(*syscall.Stat_t).Uid, cred.Uid)
	}
	res, err := http.Get(base + "/docs")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /docs from the static binary: %v %v", res, err)
	}
	res.Body.Close()
}

// imageEnv is the environment a container of the runtime stage starts
// with: the stage's ENV, with the values set overriding (the test's
// loopback address, its data directory).
func imageEnv(t *testing.T, runtime stage, set map[string]string) []string {
	t.Helper()
	env := envOf(t, runtime)
	for k, v := range set {
		if _, ok := env[k]; !ok {
			t.Fatalf("the image sets no %s to override", k)
		}
		env[k] = v
	}
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// imageEntrypoint is the ENTRYPOINT with the binary's path in this test.
func imageEntrypoint(t *testing.T, runtime stage, bin string) []string {
	t.Helper()
	ep := runtime.all("ENTRYPOINT")[0].execForm(t)
	return append([]string{bin}, ep[1:]...)
}

// healthArgv is the HEALTHCHECK command with the binary's path here.
func healthArgv(t *testing.T, runtime stage, bin string) []string {
	t.Helper()
	hc := runtime.all("HEALTHCHECK")[0]
	argv := (instruction{cmd: "HEALTHCHECK", args: strings.TrimPrefix(hc.args, "CMD "), line: hc.line}).execForm(t)
	return append([]string{bin}, argv[1:]...)
}

// runCheck runs a health check command; it passes when it exits 0.
func runCheck(ctx context.Context, argv, env []string, cred *syscall.Credential) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %v: %s", argv[1:], err, bytes.TrimSpace(out))
	}
	return nil
}

// api sends one request with the admin key and decodes a JSON answer.
func api(ctx context.Context, method, url, body string, into any) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if into != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, into); err != nil {
			return res.StatusCode, fmt.Errorf("decoding %s: %w", raw, err)
		}
	}
	return res.StatusCode, nil
}

// createTask creates a task and returns its id.
func createTask(t *testing.T, base, body string) string {
	t.Helper()
	var created struct {
		ID string `json:"id"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code, err := api(ctx, "POST", base+"/api/v1/tasks/", body, &created); err != nil || code != 201 || created.ID == "" {
		t.Fatalf("creating a task: %d %v %+v", code, err, created)
	}
	return created.ID
}

// taskStatus fails unless the task has the status (a failed task is
// reported at once).
func taskStatus(ctx context.Context, base, id, want string) error {
	var task struct {
		Status string `json:"status"`
		Errors any    `json:"errors"`
	}
	if code, err := api(ctx, "GET", base+"/api/v1/tasks/"+id, "", &task); err != nil || code != 200 {
		return fmt.Errorf("GET the task: %d %v", code, err)
	}
	if task.Status != want {
		return fmt.Errorf("the task is %s (errors %v)", task.Status, task.Errors)
	}
	return nil
}
