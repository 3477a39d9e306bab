package replicate_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/executortest"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/executor/replicate"
	"github.com/computeserver/compute/internal/executor/replicate/replicatefake"
	"github.com/computeserver/compute/internal/task"
)

// randomPNG is size bytes starting with the PNG signature, the rest random.
func randomPNG(size int) []byte {
	data := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(size), 11))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	copy(data, "\x89PNG\r\n\x1a\n")
	return data
}

// checking returns a Replicate fake whose model fails a prediction unless
// its image_url is a data URI or names a file uploaded to the fake whose
// sha256 is want's.
func checking(t *testing.T, cfg replicatefake.Config, want *atomic.Pointer[[32]byte]) *service {
	t.Helper()
	var s *service
	cfg.Outcome = func(c replicatefake.Create) replicatefake.Outcome {
		url := imageURL(t, c)
		if strings.HasPrefix(url, "data:") {
			return replicatefake.Outcome{}
		}
		data, ok := s.fake.Uploaded(url)
		if !ok || sha256.Sum256(data) != *want.Load() {
			return replicatefake.Outcome{Error: "Prediction input failed validation: image_url is not the file uploaded"}
		}
		return replicatefake.Outcome{}
	}
	s = newService(t, cfg)
	return s
}

func imageURL(t *testing.T, c replicatefake.Create) string {
	var body struct {
		Input struct {
			ImageURL string `json:"image_url"`
		} `json:"input"`
	}
	if err := json.Unmarshal(c.Body, &body); err != nil {
		t.Error(err)
	}
	return body.Input.ImageURL
}

func (s *service) uploading(t *testing.T, mod func(*replicate.Settings)) *replicate.Executor {
	t.Helper()
	set := replicate.Settings{Token: token}
	set.BaseURL = s.url
	set.Model = "black-forest-labs/flux-schnell"
	set.PollInterval, set.PollMax = "2ms", "20ms"
	if mod != nil {
		mod(&set)
	}
	ex, err := replicate.New("replicate-test", set, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func execute(t *testing.T, ex executor.Executor, j *executor.Job) error {
	t.Helper()
	st := &hostedtest.Store{}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := executor.Execute(ctx, ex, st.Prepare(j), hostedtest.Discard())
	return err
}

// TestLargeInputUploaded: an input over inline_input_max_bytes is
// uploaded with POST /v1/files (streamed multipart, whole or of unknown
// size) and its urls.get reaches the model, whose bytes are the input's;
// a small one is still inlined; upload_inputs: always uploads it too.
func TestLargeInputUploaded(t *testing.T) {
	t.Parallel()
	big := randomPNG(3<<20 + 3)
	sum := sha256.Sum256(big)
	var want atomic.Pointer[[32]byte]
	want.Store(&sum)
	s := checking(t, replicatefake.Config{}, &want)
	ex := s.uploading(t, func(set *replicate.Settings) { set.InlineInputMaxBytes = 64 << 10 })
	for _, size := range []int64{0, -1} {
		j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"image_url": "/api/v1/artifacts/tasks/1/big.png"})
		if size == 0 {
			j.OpenInput = func(context.Context, string) ([]byte, error) { return big, nil }
		} else {
			j.OpenInputStream = func(context.Context, string) (io.ReadCloser, int64, error) {
				return io.NopCloser(bytes.NewReader(big)), size, nil
			}
		}
		before := len(s.fake.Creates())
		if err := execute(t, ex, j); err != nil {
			t.Fatalf("Execute (size %d): %v", size, err)
		}
		ups := s.fake.FileUploads()
		up := ups[len(ups)-1]
		if url := imageURL(t, s.fake.Creates()[before]); !strings.HasSuffix(url, "/v1/files/"+up.ID) || up.Name != "big.png" || up.ContentType != "image/png" {
			t.Errorf("image_url %s after upload %+v, want urls.get of big.png (image/png)", url, up)
		}
	}

	small := big[:200]
	smallSum := sha256.Sum256(small)
	for _, mode := range []string{"", "always"} {
		ex := s.uploading(t, func(set *replicate.Settings) { set.InlineInputMaxBytes, set.UploadInputs = 64<<10, mode })
		j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"image_url": "http://10.0.0.1/small.png"})
		j.OpenInput = func(context.Context, string) ([]byte, error) { return small, nil }
		n, before := len(s.fake.FileUploads()), len(s.fake.Creates())
		want.Store(&smallSum)
		if err := execute(t, ex, j); err != nil {
			t.Fatalf("Execute small (upload_inputs %q): %v", mode, err)
		}
		url := imageURL(t, s.fake.Creates()[before])
		if uploaded := len(s.fake.FileUploads()) - n; mode == "" && (uploaded != 0 || !strings.HasPrefix(url, "data:image/png;base64,")) ||
			mode == "always" && (uploaded != 1 || strings.HasPrefix(url, "data:")) {
			t.Errorf("upload_inputs %q: small input handed over as %.40q after %d uploads", mode, url, uploaded)
		}
	}
}

// TestUploadFailures: each failure of POST /v1/files is classified, no
// prediction is created, and no error names the token.
func TestUploadFailures(t *testing.T) {
	t.Parallel()
	big := randomPNG(4096)
	for _, tc := range []struct {
		name  string
		cfg   replicatefake.Config
		code  int
		mod   func(*replicate.Settings)
		want  executor.Category
		after time.Duration
	}{
		{name: "503", code: http.StatusServiceUnavailable, want: executor.ProviderUnavailable},
		{name: "500", code: http.StatusInternalServerError, want: executor.ProviderError},
		{name: "429", code: http.StatusTooManyRequests, want: executor.RateLimited, after: time.Second},
		{name: "413", cfg: replicatefake.Config{MaxFileBytes: 1000}, want: executor.InvalidInput},
		{name: "over upload_max_bytes", mod: func(set *replicate.Settings) { set.UploadMaxBytes = 1000 }, want: executor.InvalidInput},
		{name: "never", mod: func(set *replicate.Settings) { set.UploadInputs = "never" }, want: executor.InvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newService(t, tc.cfg)
			if tc.code != 0 {
				s.fake.FailNextFiles(1, tc.code)
			}
			ex := s.uploading(t, func(set *replicate.Settings) {
				set.InlineInputMaxBytes = 1024
				if tc.mod != nil {
					tc.mod(set)
				}
			})
			j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"image_url": "/api/v1/artifacts/tasks/1/big.png"})
			j.OpenInput = func(context.Context, string) ([]byte, error) { return big, nil }
			err := execute(t, ex, j)
			if !executor.Is(err, tc.want) {
				t.Fatalf("Execute: %v, want %s", err, tc.want)
			}
			var ra *task.RetryAfterError
			if tc.after > 0 && (!errors.As(err, &ra) || ra.After != tc.after) {
				t.Errorf("Execute: %v, want a retry after %s", err, tc.after)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q names the token", err)
			}
			if n := len(s.fake.Creates()); n != 0 {
				t.Errorf("%d creates, want none after a failed upload", n)
			}
		})
	}

	// The service down (502 from its front): provider_unavailable.
	s := newService(t, replicatefake.Config{})
	ex := s.uploading(t, func(set *replicate.Settings) { set.InlineInputMaxBytes = 1024 })
	s.front.SetAvailable(t, false)
	j := s.jobs.Job(t, executortest.Behaviour{}, map[string]any{"image_url": "/api/v1/artifacts/tasks/1/big.png"})
	j.OpenInput = func(context.Context, string) ([]byte, error) { return big, nil }
	if err := execute(t, ex, j); !executor.Is(err, executor.ProviderUnavailable) {
		t.Fatalf("Execute with the service down: %v, want provider_unavailable", err)
	}
}
