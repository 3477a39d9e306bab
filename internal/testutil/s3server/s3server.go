// Package s3server gives tests a real S3-compatible server: versitygw
// serving a temporary directory on a free loopback port, with a bucket of
// the test's own. The binary is found through COMPUTE_TEST_VERSITYGW (a
// path), then PATH, then $GOPATH/bin (`go install
// github.com/versity/versitygw/cmd/versitygw@v1.8.0`; .ci/run installs it).
// Without it the test is skipped, except under CI=true, where it fails.
package s3server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/computeserver/compute/internal/config"
)

// The root credentials every server started here accepts.
const (
	AccessKey = "computetestaccess"
	SecretKey = "computetestsecret0123456789"
	Region    = "us-east-1"
)

// Server is one running versitygw.
type Server struct {
	// Endpoint is its base URL, http://127.0.0.1:port.
	Endpoint string
	// Bucket is the bucket created for the test.
	Bucket string
	// Dir is the directory it serves (one subdirectory per bucket).
	Dir string
	// stop kills the process once and waits for it.
	stop func()
}

// Stop kills the server now (an S3 outage); the test's end does otherwise.
func (s *Server) Stop() { s.stop() }

// URL returns s3://Bucket/prefix.
func (s *Server) URL(prefix string) string {
	if prefix == "" {
		return "s3://" + s.Bucket
	}
	return "s3://" + s.Bucket + "/" + prefix
}

// Configure points cfg's artifact store at the bucket, under prefix.
func (s *Server) Configure(cfg *config.Config, prefix string) {
	cfg.ArtifactsURL = s.URL(prefix)
	cfg.S3Endpoint, cfg.S3Region = s.Endpoint, Region
	cfg.S3AccessKeyID, cfg.S3SecretAccessKey = AccessKey, SecretKey
}

// Client returns an S3 client of the server, for checks a test makes
// behind the store's back.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region: Region, BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials:                credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// Keys lists every object key under prefix in the bucket.
func (s *Server) Keys(tb testing.TB, prefix string) []string {
	tb.Helper()
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.Client(), &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: &prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			tb.Fatalf("s3server: listing %s: %v", prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// Binary returns the path of the versitygw binary, or an error saying
// where it was looked for.
func Binary() (string, error) {
	if p := os.Getenv("COMPUTE_TEST_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("COMPUTE_TEST_VERSITYGW=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("versitygw not found in COMPUTE_TEST_VERSITYGW, PATH or $GOPATH/bin " +
		"(go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
}

// Start runs a versitygw for the test, creates a bucket, and stops the
// server (by its pid) when the test ends. It skips the test when the
// binary is missing, unless CI=true.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("s3server: a real S3 server is required in CI: %v", err)
		}
		tb.Skipf("s3server: %v; skipping the S3 test", err)
	}
	var lastErr error
	for range 3 { // the free port may be taken between choosing and binding it
		srv, err := start(tb, bin)
		if err == nil {
			return srv
		}
		lastErr = err
	}
	tb.Fatalf("s3server: starting versitygw: %v", lastErr)
	return nil
}

// start makes one attempt at starting the server on a free port.
func start(tb testing.TB, bin string) (*Server, error) {
	dir := tb.TempDir()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + port
	cmd := exec.Command(bin, "--port", addr, "posix", dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+AccessKey, "ROOT_SECRET_KEY="+SecretKey)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Kill() // this test's own process, by pid
			<-exited
		})
	}
	if err := waitListening(addr, exited, &waitErr); err != nil {
		stop()
		return nil, fmt.Errorf("%w; its output: %s", err, out.String())
	}
	tb.Cleanup(stop)
	srv := &Server{Endpoint: "http://" + addr, Dir: dir, stop: stop}
	srv.Bucket = srv.NewBucket(tb)
	return srv, nil
}

// NewBucket creates another bucket on the server and returns its name.
func (s *Server) NewBucket(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "compute-test-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		tb.Fatalf("s3server: creating bucket %s: %v", name, err)
	}
	return name
}

// freePort returns a loopback port nothing listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

// waitListening waits until addr accepts connections, the process exits,
// or 20 s pass.
func waitListening(addr string, exited <-chan struct{}, waitErr *error) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited at start: %v", *waitErr)
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw is not listening on %s after 20s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lockedBuffer collects the server's output from its two streams.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 64<<10 {
		return len(p), nil
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
