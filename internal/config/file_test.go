package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/config"
)

// writeFile writes a config file into a fresh directory and returns its
// path.
func writeFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "compute.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The tests below set environment variables, so they do not run in
// parallel.

func TestLoadFile(t *testing.T) {
	t.Setenv("SEAM_TEST_TOKEN", "s3cret: with # yaml characters")
	t.Setenv("SEAM_TEST_WORKERS", "3")
	t.Setenv("COMPUTE_LEASE", "")
	path := writeFile(t, `
addr: 127.0.0.1:9100
data_dir: state
workers: ${SEAM_TEST_WORKERS}
lease: 45s
queue_limits: {gpu: 2}
allow_private_cidrs: [10.20.0.0/16]
executors:
  gpu:
    type: mock
    slots: 2
    token: "${SEAM_TEST_TOKEN}"
  local: {type: local}
types:
  generation: {executor: gpu, fallback: [local]}
`)
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Addr != "127.0.0.1:9100" || c.Workers != 3 || c.Lease != 45*time.Second || c.QueueLimits["gpu"] != 2 {
		t.Errorf("settings: addr %q workers %d lease %s limits %v", c.Addr, c.Workers, c.Lease, c.QueueLimits)
	}
	if len(c.AllowPrivateCIDRs) != 1 || c.AllowPrivateCIDRs[0].String() != "10.20.0.0/16" {
		t.Errorf("allow_private_cidrs = %v", c.AllowPrivateCIDRs)
	}
	if want := filepath.Join(filepath.Dir(path), "state"); c.DataDir != want {
		t.Errorf("data_dir %q, want %q (relative to the file)", c.DataDir, want)
	}
	gpu := c.Executors["gpu"]
	if gpu.Type != "mock" || gpu.Line != 10 || gpu.Dir != filepath.Dir(path) {
		t.Errorf("executors.gpu = %+v", gpu)
	}
	if want := `{"slots":2,"token":"s3cret: with # yaml characters"}`; string(gpu.Settings) != want {
		t.Errorf("executors.gpu settings %s, want %s", gpu.Settings, want)
	}
	if r := c.Types["generation"]; r.Executor != "gpu" || len(r.Fallback) != 1 || r.Fallback[0] != "local" {
		t.Errorf("types.generation = %+v", r)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	t.Setenv("COMPUTE_WORKERS", "7")
	t.Setenv("COMPUTE_DATA_DIR", "elsewhere")
	c, err := config.Load(writeFile(t, "workers: 2\ndata_dir: state\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 7 || c.DataDir != "elsewhere" {
		t.Errorf("workers %d, data_dir %q; want the environment's 7, elsewhere", c.Workers, c.DataDir)
	}
}

func TestNoFile(t *testing.T) {
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "" || c.Executors != nil || c.Types != nil {
		t.Errorf("without a file: file %q, executors %v, types %v", c.File, c.Executors, c.Types)
	}
}

func TestFileErrors(t *testing.T) {
	t.Setenv("SEAM_TEST_UNSET", "") // restored after the test
	if err := os.Unsetenv("SEAM_TEST_UNSET"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SEAM_TEST_SECRET", "hunter2-secret")
	tests := []struct {
		name, text string
		want       []string
	}{
		{"unknown setting", "addr: 127.0.0.1:1\nworkerz: 3\n", []string{":2: workerz: unknown setting"}},
		{"wrong value type", "workers: many\n", []string{":1: workers:", "cannot unmarshal"}},
		{"unset variable", "executors:\n  gpu:\n    type: mock\n    key: ${SEAM_TEST_UNSET}\n",
			[]string{":4: executors.gpu.key: environment variable SEAM_TEST_UNSET is not set"}},
		{"executor without a type", "executors:\n  gpu: {slots: 1}\n", []string{":2: executors.gpu.type: is required"}},
		{"bad executor name", "executors:\n  GPU One: {type: mock}\n", []string{":2: executors.GPU One:"}},
		{"unknown key in types", "types:\n  generation: {executor: gpu, fallbacks: [x]}\n", []string{":2: types.generation.fallbacks: unknown key"}},
		{"type without executor", "types:\n  generation: {fallback: [x]}\n", []string{":2: types.generation.executor: is required"}},
		{"not a mapping", "- a\n- b\n", []string{":1:", "must be a mapping"}},
		{"bad yaml", "workers: [\n", []string{"compute.yaml"}},
		{"secret not in errors", "api_key: ${SEAM_TEST_SECRET}\nworkers: x\n", []string{":2: workers:"}},
		{"secret not in a type error", "workers: ${SEAM_TEST_SECRET}\n", []string{":1: workers: the value from the environment is not a valid int"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.text)
			_, err := config.Load(path)
			if err == nil {
				t.Fatal("Load accepted the file")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) {
				t.Errorf("error %q does not name the file %s", msg, path)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, "hunter2") {
				t.Errorf("error %q shows a secret", msg)
			}
		})
	}
	if _, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("a missing file: %v", err)
	}
}

// TestLoadFileArtifacts: the artifact store's settings, the AWS ones
// included, are read from the file under their lower-case names.
func TestLoadFileArtifacts(t *testing.T) {
	for _, v := range []string{"COMPUTE_ARTIFACTS_URL", "COMPUTE_ARTIFACTS_PUBLIC_URL", "COMPUTE_ARTIFACT_RETENTION",
		"AWS_REGION", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(v, "")
	}
	path := writeFile(t, `
artifacts_url: s3://bucket/compute
artifacts_public_url: https://cdn.example.com/compute
artifact_retention: 720h
aws_region: auto
aws_endpoint_url_s3: https://account.r2.cloudflarestorage.com
aws_access_key_id: key
aws_secret_access_key: secret
`)
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.ArtifactsURL != "s3://bucket/compute" || c.ArtifactsPublicURL != "https://cdn.example.com/compute" || c.ArtifactRetention != 720*time.Hour ||
		c.S3Region != "auto" || c.S3Endpoint != "https://account.r2.cloudflarestorage.com" || c.S3AccessKeyID != "key" || c.S3SecretAccessKey != "secret" {
		t.Errorf("settings %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
