package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
	"github.com/computeserver/compute/internal/conformance"
	"github.com/computeserver/compute/internal/testutil/testdb"
)

const key = "custom-type-key-0123456789"

// TestServesOwnAndBuiltinTypes starts the program on loopback and runs a
// word_count task and an echo task to completion.
func TestServesOwnAndBuiltinTypes(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir, cfg.APIKey, cfg.ShutdownGrace = t.TempDir(), key, 2*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, ln, testdb.Logger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	base := "http://" + cfg.Addr + "/api/v1/tasks/"

	call := func(method, url string, body any) map[string]any {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, url, bytes.NewReader(raw))
		if body == nil {
			req, _ = http.NewRequest(method, url, nil)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(res.Body).Decode(&m); err != nil || res.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %v %v", method, url, res.StatusCode, m, err)
		}
		return m
	}
	wait := func(id string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			got := call(http.MethodGet, base+id, nil)
			if got["status"] == "completed" || got["status"] == "failed" || time.Now().After(deadline) {
				return got
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	wc := call(http.MethodPost, base, map[string]any{"task_type": "word_count", "text": "the quick brown fox\njumps over\nthe lazy dog"})
	echo := call(http.MethodPost, base+"echo", map[string]any{"message": "hello"})

	got := wait(wc["id"].(string))
	if got["status"] != "completed" || got["words"] != 9.0 || got["lines"] != 3.0 || got["characters"] != 43.0 {
		t.Errorf("word_count task: %v", got)
	}
	if got := wait(echo["id"].(string)); got["status"] != "completed" {
		t.Errorf("echo task: %v", got)
	}
	types := call(http.MethodGet, "http://"+cfg.Addr+"/api/v1/task-types", nil)
	var names []string
	for _, ty := range types["types"].([]any) {
		names = append(names, ty.(map[string]any)["name"].(string))
	}
	if want := "background_fix background_remove detail_enhancer echo editing face_enhancer generation image_adjuster llm_interaction refine training video_generation word_count"; strings.Join(names, " ") != want {
		t.Errorf("task types %v, want %s", names, want)
	}
}

// TestConformance holds word_count to the same checklist as the built-in
// types, on SQLite and PostgreSQL.
func TestConformance(t *testing.T) {
	t.Parallel()
	conformance.Run(t, conformance.Options{Register: register})
}
