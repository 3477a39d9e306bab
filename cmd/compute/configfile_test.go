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
	planned := write("planned.yaml", "data_dir: state\nexecutors:\n  gpu: {type: comfyui}\n")
	_, err = run(t, context.Background(), "serve", "--config", planned, "--addr", freeAddr(t))
	if err == nil || !strings.Contains(err.Error(), "planned.yaml") || !strings.Contains(err.Error(), `executors.gpu (line 3): executor type "comfyui" is not in this build yet`) {
		t.Errorf("serve with an executor type not built yet: %v", err)
	}
}
