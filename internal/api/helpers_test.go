package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/computeserver/compute/internal/apikey"
	"github.com/computeserver/compute/internal/app"
	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/store"
	"github.com/computeserver/compute/internal/testutil/testdb"
	"github.com/computeserver/compute/internal/testutil/testserver"
)

const adminKey = "test-admin-key-0123456789"

// env is one running server on loopback with a real database.
type env struct {
	t    *testing.T
	base string
	app  *app.App
}

// start runs the real server wiring (app.New + Serve) on a loopback port.
func start(t *testing.T, dialect string, mutate ...func(*config.Config)) *env {
	t.Helper()
	cfg := testserver.Config(t, dialect, adminKey)
	for _, m := range mutate {
		m(&cfg)
	}
	s := testserver.Start(t, cfg, app.Options{Workers: cfg.Workers > 0, Version: "test"}, testdb.Logger(t))
	return &env{t: t, base: s.Base, app: s.App}
}

// tenantKey creates a key for tenant and returns it.
func (e *env) tenantKey(tenant string) string {
	e.t.Helper()
	key := apikey.Generate()
	if err := e.app.Store.CreateAPIKey(context.Background(), store.APIKey{
		ID: uuid.New(), Hash: apikey.Hash(key), Prefix: apikey.Display(key), TenantID: tenant, CreatedAt: time.Now(),
	}); err != nil {
		e.t.Fatal(err)
	}
	return key
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
	return m
}

// do sends a request with the admin key unless key is given in hdr.
func (e *env) do(method, path string, body any, hdr ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// must asserts the status code and returns the decoded body.
func (e *env) must(status int, method, path string, body any, hdr ...string) map[string]any {
	e.t.Helper()
	r := e.do(method, path, body, hdr...)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, status, r.body)
	}
	if len(r.body) == 0 {
		return nil
	}
	return r.json(e.t)
}

// waitStatus polls a task until it reaches want, failing after a bound.
func (e *env) waitStatus(id string, want ...string) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := e.must(200, "GET", "/api/v1/tasks/"+id, nil)
		for _, w := range want {
			if m["status"] == w {
				return m
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s is %v, want one of %v", id, m["status"], want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// problemAt asserts an RFC 9457 problem with the status and, when loc is
// not empty, an error located at loc.
func problemAt(t *testing.T, r response, status int, loc string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json", ct)
	}
	m := r.json(t)
	if m["status"] != float64(status) || m["title"] == "" || m["detail"] == "" {
		t.Fatalf("problem body lacks status/title/detail: %s", r.body)
	}
	if loc == "" {
		return
	}
	errs, _ := m["errors"].([]any)
	for _, e := range errs {
		if em, _ := e.(map[string]any); em["location"] == loc {
			return
		}
	}
	t.Fatalf("no error at %s in %s", loc, r.body)
}
