package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigFile: every role reads --config (or COMPUTE_CONFIG); its
// relative data_dir is relative to the file, and its errors name the file.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("COMPUTE_DATA_DIR", "")
	t.Setenv("COMPUTE_CONFIG", "")
	good := write("good.yaml", "data_dir: state\nexecutors:\n  gpu: {type: mock}\n")
	if _, err := run(t, context.Background(), "migrate", "up", "--config", good); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "compute.db")); err != nil {
		t.Errorf("the database is not under the file's data_dir: %v", err)
	}

	t.Setenv("COMPUTE_CONFIG", write("typo.yaml", "datadir: state\n"))
	_, err := run(t, context.Background(), "migrate", "status")
	if err == nil || !strings.Contains(err.Error(), "typo.yaml:1: datadir: unknown setting") {
		t.Errorf("COMPUTE_CONFIG with a typo: %v", err)
	}

	t.Setenv("COMPUTE_CONFIG", "")
	// A comfyui executor's workflows directory is relative to the file.
	comfy := write("comfy.yaml", "data_dir: state\nexecutors:\n  gpu: {type: comfyui, servers: [{url: \"http://127.0.0.1:1\"}], workflows: ./wf}\n")
	_, err = run(t, context.Background(), "serve", "--config", comfy, "--addr", freeAddr(t))
	if err == nil || !strings.Contains(err.Error(), "executors.gpu (line 3): workflows: reading workflows: open "+filepath.Join(filepath.Dir(comfy), "wf")) {
		t.Errorf("serve with a comfyui executor whose workflows are missing: %v", err)
	}

	unknown := write("unknown.yaml", "data_dir: state\nexecutors:\n  gpu: {type: tpu}\n")
	_, err = run(t, context.Background(), "serve", "--config", unknown, "--addr", freeAddr(t))
	if err == nil || !strings.Contains(err.Error(), "unknown.yaml") || !strings.Contains(err.Error(), `executors.gpu (line 3): unknown executor type "tpu"`) {
		t.Errorf("serve with an unknown executor type: %v", err)
	}
}
