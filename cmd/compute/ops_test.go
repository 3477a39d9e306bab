package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/computeserver/compute/internal/testutil/s3server"
)

// TestHealthcheck: the command exits 0 on a 2xx, fails on another status
// or no listener, and by default asks /healthz on loopback at
// COMPUTE_ADDR's port (the container listens on 0.0.0.0).
func TestHealthcheck(t *testing.T) {
	status := http.StatusOK
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("COMPUTE_ADDR", "0.0.0.0:"+port)
	ctx := context.Background()
	if out, err := run(t, ctx, "healthcheck"); err != nil || !strings.Contains(out, "http://127.0.0.1:"+port+"/healthz: 200") {
		t.Fatalf("healthcheck: %q, %v", out, err)
	}
	if _, err := run(t, ctx, "healthcheck", "--url", srv.URL+"/metrics"); err != nil {
		t.Fatalf("healthcheck --url: %v", err)
	}
	if strings.Join(paths, ",") != "/healthz,/metrics" {
		t.Fatalf("paths asked: %v", paths)
	}
	status = http.StatusServiceUnavailable
	if _, err := run(t, ctx, "healthcheck"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("healthcheck of a 503: %v", err)
	}
	if _, err := run(t, ctx, "healthcheck", "--url", "http://"+freeAddr(t)+"/healthz"); err == nil {
		t.Fatal("healthcheck of a closed port passed")
	}
}

// TestArtifactsCreateBucket: the bucket of COMPUTE_ARTIFACTS_URL is made
// once; a second run finds it; without an S3 URL the command refuses.
func TestHealthURL(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, addr, want string }{
		{"every interface", "0.0.0.0:9000", "http://127.0.0.1:9000/healthz"},
		{"every interface, IPv6", "[::]:9000", "http://127.0.0.1:9000/healthz"},
		{"no host", ":9000", "http://127.0.0.1:9000/healthz"},
		{"one address", "10.1.2.3:9000", "http://10.1.2.3:9000/healthz"},
		{"IPv6 loopback", "[::1]:9000", "http://[::1]:9000/healthz"},
		{"a name", "localhost:8080", "http://localhost:8080/healthz"},
	} {
		if got := healthURL(c.addr); got != c.want {
			t.Errorf("%s: healthURL(%q) = %q, want %q", c.name, c.addr, got, c.want)
		}
	}
}

func TestArtifactsCreateBucket(t *testing.T) {
	s3 := s3server.Start(t)
	t.Setenv("COMPUTE_DATA_DIR", t.TempDir())
	t.Setenv("AWS_ENDPOINT_URL_S3", s3.Endpoint)
	t.Setenv("AWS_REGION", s3server.Region)
	t.Setenv("AWS_ACCESS_KEY_ID", s3server.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3server.SecretKey)
	ctx := context.Background()
	if _, err := run(t, ctx, "artifacts", "create-bucket"); err == nil || !strings.Contains(err.Error(), "COMPUTE_ARTIFACTS_URL is not set") {
		t.Fatalf("without COMPUTE_ARTIFACTS_URL: %v", err)
	}
	t.Setenv("COMPUTE_ARTIFACTS_URL", "s3://compute-cli-bucket/artifacts")
	for _, want := range []string{"created the bucket", "exists"} {
		out, err := run(t, ctx, "artifacts", "create-bucket")
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("create-bucket: %q, %v; want %q", out, err, want)
		}
	}
	bucket := "compute-cli-bucket"
	if _, err := s3.Client().HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("the bucket is not there: %v", err)
	}
}
