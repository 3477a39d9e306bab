package fal_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/fal"
	"github.com/computeserver/compute/internal/executor/fal/falfake"
	"github.com/computeserver/compute/internal/task"
)

// bigPNG is size bytes starting with the PNG signature, the rest random.
func bigPNG(size int) []byte {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 7))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	copy(data, "\x89PNG\r\n\x1a\n")
	return data
}

// checkingService is a fal fake whose model fails a request unless its
// image_url is a file uploaded to the fake with the sha256 want holds, or
// a data URI.
func checkingService(t *testing.T, cfg falfake.Config, want *[32]byte) *service {
	t.Helper()
	var s *service
	cfg.Outcome = func(sub falfake.Submission) falfake.Outcome {
		var in struct {
			ImageURL string `json:"image_url"`
		}
		_ = json.Unmarshal(sub.Input, &in)
		if strings.HasPrefix(in.ImageURL, "data:") {
			return falfake.DefaultOutcome(sub)
		}
		data, ok := s.fake.Uploaded(in.ImageURL)
		if !ok || sha256.Sum256(data) != *want {
			return falfake.Outcome{Status: http.StatusUnprocessableEntity, Detail: "image_url is not the input uploaded"}
		}
		return falfake.DefaultOutcome(sub)
	}
	s = newService(t, cfg)
	return s
}

func imageURLOf(t *testing.T, sub falfake.Submission) string {
	t.Helper()
	var in struct {
		ImageURL string `json:"image_url"`
	}
	if err := json.Unmarshal(sub.Input, &in); err != nil {
		t.Fatal(err)
	}
	return in.ImageURL
}

// TestLargeInputUploaded: an input over inline_input_max_bytes reaches the
// model byte for byte through fal's storage (token, then upload), read as
// a stream when the job can; the token is reused; a small input is still
// inlined.
func TestLargeInputUploaded(t *testing.T) {
	t.Parallel()
	big := bigPNG(3<<20 + 5)
	sum := sha256.Sum256(big)
	s := checkingService(t, falfake.Config{}, &sum)
	ex := s.executor(t, func(set *fal.Settings) { set.InlineInputMaxBytes = 64 << 10 })

	for _, stream := range []struct {
		name string
		size int64
	}{{"whole", 0}, {"stream of known size", int64(len(big))}, {"stream of unknown size", -1}} {
		t.Run(stream.name, func(t *testing.T) {
			j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "/api/v1/artifacts/tasks/1/big.png"})
			if stream.size == 0 {
				j.OpenInput = func(context.Context, string) ([]byte, error) { return big, nil }
			} else {
				j.OpenInputStream = func(context.Context, string) (io.ReadCloser, int64, error) {
					return io.NopCloser(bytes.NewReader(big)), stream.size, nil
				}
			}
			before := len(s.fake.Submissions())
			if _, _, err := run(t, ex, j); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			url := imageURLOf(t, s.fake.Submissions()[before])
			ups := s.fake.Uploads()
			last := ups[len(ups)-1]
			if last.URL != url || last.Name != "big.png" || last.ContentType != "image/png" || last.Size != int64(len(big)) {
				t.Errorf("upload %+v, want big.png (image/png, %d bytes) at the image_url %s", last, len(big), url)
			}
		})
	}
	if n := s.fake.Tokens(); n != 1 {
		t.Errorf("%d storage tokens asked for, want 1 reused", n)
	}

	// Small: inlined, not uploaded.
	n := len(s.fake.Uploads())
	j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "/api/v1/artifacts/tasks/1/small.png"})
	j.OpenInput = func(context.Context, string) ([]byte, error) { return big[:100], nil }
	before := len(s.fake.Submissions())
	if _, _, err := run(t, ex, j); err != nil {
		t.Fatalf("Execute small: %v", err)
	}
	if url := imageURLOf(t, s.fake.Submissions()[before]); !strings.HasPrefix(url, "data:image/png;base64,") || len(s.fake.Uploads()) != n {
		t.Errorf("small input handed over as %.40q with %d uploads, want a data URI and none", url, len(s.fake.Uploads())-n)
	}

	// A token past its expiry is renewed: the fake refuses it (401), the
	// attempt fails as the provider's error, the next asks a new one.
	s.fake.ExpireTokens()
	j = s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "/api/v1/artifacts/tasks/1/big.png"})
	j.OpenInput = func(context.Context, string) ([]byte, error) { return big, nil }
	if _, _, err := run(t, ex, j); !executor.Is(err, executor.ProviderError) {
		t.Fatalf("Execute with an expired token: %v, want provider_error", err)
	}
	if _, _, err := run(t, ex, j); err != nil {
		t.Fatalf("Execute after the token was renewed: %v", err)
	}
	if n := s.fake.Tokens(); n != 2 {
		t.Errorf("%d storage tokens asked for, want 2", n)
	}
}

// TestUploadAlways: with upload_inputs: always, a small input is uploaded
// too.
func TestUploadAlways(t *testing.T) {
	t.Parallel()
	small := bigPNG(100)
	sum := sha256.Sum256(small)
	s := checkingService(t, falfake.Config{}, &sum)
	ex := s.executor(t, func(set *fal.Settings) { set.UploadInputs = "always" })
	j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "http://127.0.0.1:1/small.png"})
	j.OpenInput = func(context.Context, string) ([]byte, error) { return small, nil }
	if _, _, err := run(t, ex, j); err != nil {
		t.Fatalf("Execute: %v", err)
	}
	if url := imageURLOf(t, s.fake.Submissions()[0]); strings.HasPrefix(url, "data:") || len(s.fake.Uploads()) != 1 {
		t.Errorf("image_url %.40q after %d uploads, want the uploaded file's URL", url, len(s.fake.Uploads()))
	}
	bad := fal.Settings{Key: key}
	bad.Model, bad.UploadInputs = "fal-ai/flux/dev", "sometimes"
	if _, err := fal.New("x", bad, nil); err == nil || !strings.Contains(err.Error(), "upload_inputs") {
		t.Errorf("New with upload_inputs: sometimes: %v, want an error naming it", err)
	}
}

// TestUploadFailures: each failure of the token or the upload is
// classified, nothing is submitted, and no error names the key or the
// storage token.
func TestUploadFailures(t *testing.T) {
	t.Parallel()
	big := bigPNG(2048)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	_ = ln.Close()

	for _, tc := range []struct {
		name  string
		cfg   falfake.Config
		setup func(*falfake.Fake)
		mod   func(*fal.Settings)
		want  executor.Category
		after time.Duration
	}{
		{name: "upload 503", setup: func(f *falfake.Fake) { f.FailNextUpload(1, http.StatusServiceUnavailable) }, want: executor.ProviderUnavailable},
		{name: "upload 500", setup: func(f *falfake.Fake) { f.FailNextUpload(1, http.StatusInternalServerError) }, want: executor.ProviderError},
		{name: "upload 429", setup: func(f *falfake.Fake) { f.FailNextUpload(1, http.StatusTooManyRequests) }, want: executor.RateLimited, after: time.Second},
		{name: "upload 413", cfg: falfake.Config{MaxUploadBytes: 1024}, want: executor.InvalidInput},
		{name: "token 503", setup: func(f *falfake.Fake) { f.FailNextToken(1, http.StatusServiceUnavailable) }, want: executor.ProviderUnavailable},
		{name: "token 429", setup: func(f *falfake.Fake) { f.FailNextToken(1, http.StatusTooManyRequests) }, want: executor.RateLimited, after: time.Second},
		{name: "token refused key", cfg: falfake.Config{Keys: []string{"other:key"}}, want: executor.ProviderError},
		{name: "CDN refuses connections", mod: func(set *fal.Settings) { set.CDNURL = closed }, want: executor.ProviderUnavailable},
		{name: "over upload_max_bytes", mod: func(set *fal.Settings) { set.UploadMaxBytes = 1024 }, want: executor.InvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, tc.cfg)
			if tc.setup != nil {
				tc.setup(s.fake)
			}
			ex := s.executor(t, func(set *fal.Settings) {
				set.InlineInputMaxBytes = 1024
				if tc.mod != nil {
					tc.mod(set)
				}
			})
			j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "/api/v1/artifacts/tasks/1/big.png"})
			j.OpenInput = func(context.Context, string) ([]byte, error) { return big, nil }
			_, _, err := run(t, ex, j)
			if !executor.Is(err, tc.want) {
				t.Fatalf("Execute: %v, want %s", err, tc.want)
			}
			var ra *task.RetryAfterError
			if tc.after > 0 && (!errors.As(err, &ra) || ra.After != tc.after) {
				t.Errorf("Execute: %v, want a retry after %s", err, tc.after)
			}
			if strings.Contains(err.Error(), "key-secret") || strings.Contains(err.Error(), "Bearer") {
				t.Errorf("error %q names a secret", err)
			}
			if n := len(s.fake.Submissions()); n != 0 {
				t.Errorf("%d submissions, want none after a failed upload", n)
			}
		})
	}
}

// TestUploadInputReadFails: an input that fails while it is streamed to
// the storage is the input's failure (invalid input), not the provider's.
func TestUploadInputReadFails(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{})
	ex := s.executor(t, func(set *fal.Settings) { set.InlineInputMaxBytes = 16 })
	j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "/api/v1/artifacts/tasks/1/big.png"})
	var reads atomic.Int64
	j.OpenInputStream = func(context.Context, string) (io.ReadCloser, int64, error) {
		return io.NopCloser(io.MultiReader(bytes.NewReader(bigPNG(4096)), failing{&reads})), -1, nil
	}
	_, _, err := run(t, ex, j)
	if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Execute: %v, want invalid input naming the read failure", err)
	}
}

type failing struct{ n *atomic.Int64 }

func (f failing) Read([]byte) (int, error) {
	f.n.Add(1)
	return 0, errors.New("disk on fire")
}

// TestUploadStreamOverLimit: an input of unknown size that grows past
// upload_max_bytes while it is sent is refused as invalid input.
func TestUploadStreamOverLimit(t *testing.T) {
	t.Parallel()
	s := newService(t, falfake.Config{})
	ex := s.executor(t, func(set *fal.Settings) { set.InlineInputMaxBytes, set.UploadMaxBytes = 1024, 64<<10 })
	j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"reference_image_url": "/api/v1/artifacts/tasks/1/big.png"})
	j.OpenInputStream = func(context.Context, string) (io.ReadCloser, int64, error) {
		return io.NopCloser(bytes.NewReader(bigPNG(1 << 20))), -1, nil
	}
	_, _, err := run(t, ex, j)
	if !executor.Is(err, executor.InvalidInput) || !strings.Contains(err.Error(), "upload_max_bytes") {
		t.Fatalf("Execute: %v, want invalid input naming upload_max_bytes", err)
	}
	if n := len(s.fake.Submissions()); n != 0 {
		t.Errorf("%d submissions, want none", n)
	}
}
