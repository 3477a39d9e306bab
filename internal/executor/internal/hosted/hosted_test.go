package hosted_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
	"github.com/computeserver/compute/internal/executor/internal/hosted/hostedtest"
	"github.com/computeserver/compute/internal/task"
)

func TestPublic(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]bool{
		"https://cdn.example.com/a.png":     true,
		"http://93.184.216.34/a.png":        true,
		"http://127.0.0.1:9000/a.png":       false,
		"http://10.1.2.3/a.png":             false,
		"http://[::1]/a.png":                false,
		"http://169.254.169.254/latest":     false,
		"http://localhost:9000/a":           false,
		"http://minio/bucket/a":             false,
		"http://storage.internal/a":         false,
		"http://printer.local/a":            false,
		"ftp://example.com/a":               false,
		"tasks/1/output-0.png":              false,
		"/api/v1/artifacts/tasks/1/out.png": false,
	} {
		if got := hosted.Public(url); got != want {
			t.Errorf("Public(%q) = %v, want %v", url, got, want)
		}
	}
}

func TestLogFraction(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		logs string
		want float64
		ok   bool
	}{
		{"", 0, false},
		{"loading weights\n", 0, false},
		{"step 1/4\nstep 3/4\n", 0.75, true},
		{" 50%|█████     | 14/28 [00:02<00:02]\n", 0.5, true},
		{"using 4/3 aspect then 250%\n", 0, false}, // neither is progress
	} {
		got, ok := hosted.LogFraction(tc.logs)
		if got != tc.want || ok != tc.ok {
			t.Errorf("LogFraction(%q) = %v, %v; want %v, %v", tc.logs, got, ok, tc.want, tc.ok)
		}
	}
}

func TestURLs(t *testing.T) {
	t.Parallel()
	var v any
	_ = json.Unmarshal([]byte(`{"seed": 1, "prompt": "a dress", "images": [{"url": "https://x/b.png"}, {"url": "https://x/a.png"}],
		"z": "data:image/png;base64,AA==", "again": "https://x/a.png"}`), &v)
	got := hosted.URLs(v)
	want := []string{"https://x/a.png", "https://x/b.png", "data:image/png;base64,AA=="}
	if !slices.Equal(got, want) {
		t.Errorf("URLs = %v, want %v (sorted keys, each once)", got, want)
	}
}

func TestStatusError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		code   int
		header http.Header
		body   string
		want   executor.Category
		after  time.Duration
		detail string
	}{
		{"429 with Retry-After", 429, http.Header{"Retry-After": {"30"}}, `{"detail":"throttled"}`, executor.RateLimited, 30 * time.Second, "throttled"},
		{"429 without", 429, nil, `{}`, executor.RateLimited, hosted.DefaultRetryAfter, ""},
		{"422 FastAPI detail", 422, nil, `{"detail":[{"loc":["body","prompt"],"msg":"field required"}]}`, executor.InvalidInput, 0, "field required"},
		{"503 ingress page", 503, nil, `<html>503</html>`, executor.ProviderUnavailable, 0, "<html>503</html>"},
		{"500 problem", 500, nil, `{"title":"Internal","status":500}`, executor.ProviderError, 0, "Internal"},
	}
	for _, tc := range tests {
		err := hosted.StatusError("calling", &hosted.Response{Code: tc.code, Header: tc.header, Body: []byte(tc.body)})
		if executor.CategoryOf(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
		var ra *task.RetryAfterError
		if tc.after > 0 && (!errors.As(err, &ra) || ra.After != tc.after) {
			t.Errorf("%s: %v, want a retry after %v", tc.name, err, tc.after)
		}
		if tc.detail != "" && !strings.Contains(err.Error(), tc.detail) {
			t.Errorf("%s: %q lacks %q", tc.name, err, tc.detail)
		}
	}
}

func TestFailure(t *testing.T) {
	t.Parallel()
	for msg, want := range map[string]executor.Category{
		"NSFW content detected. Try running it again, or try a different prompt.": executor.SafetyBlocked,
		"Prediction input failed validation: width":                               executor.InvalidInput,
		"CUDA out of memory": executor.ProviderError,
	} {
		if got := executor.CategoryOf(hosted.Failure("job", msg)); got != want {
			t.Errorf("Failure(%q) is %s, want %s", msg, got, want)
		}
	}
}

// TestDownload: outputs at URLs and in data URIs are stored with their
// sizes; an expired URL fails as its answer says.
func TestDownload(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 2, 3))); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gone.png" {
			http.Error(w, `{"detail":"expired"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(buf.Bytes())
	}))
	t.Cleanup(srv.Close)
	st := &hostedtest.Store{}
	job := st.Prepare(&executor.Job{})
	arts, err := hosted.Download(t.Context(), nil, job, []string{srv.URL + "/a.png", "data:text/plain;base64,aGk="})
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 2 || arts[0].Width != 2 || arts[0].Height != 3 || arts[1].ContentType != "text/plain" {
		t.Errorf("artifacts %+v", arts)
	}
	if data, _ := st.File("output-1.txt"); string(data) != "hi" {
		t.Errorf("output-1.txt = %q", data)
	}
	// A LoRA trainer's weights keep their long extension (a LoRA loader
	// lists only .safetensors files); other long ones give way to the
	// content type's.
	if _, err := hosted.Download(t.Context(), nil, job, []string{srv.URL + "/lora.safetensors", srv.URL + "/x.verylongext"}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"output-0.safetensors", "output-1.png"} {
		if _, ok := st.File(name); !ok {
			t.Errorf("no %s among the outputs", name)
		}
	}
	if _, err := hosted.Download(t.Context(), nil, job, []string{srv.URL + "/gone.png"}); executor.CategoryOf(err) != executor.ProviderError {
		t.Errorf("an expired output: %v", err)
	}
}

// TestFollow: polls back off while nothing moves, a transient failure is
// retried, and the step's end ends the wait.
func TestFollow(t *testing.T) {
	t.Parallel()
	answers := []error{nil, executor.Errorf(executor.ProviderUnavailable, "blip"), nil, nil}
	n := 0
	err := hosted.Follow(t.Context(), hosted.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond},
		func(context.Context) (int, error) {
			err := answers[n]
			n++
			return n, err
		},
		func(i int) (string, bool, error) { return "same", i == len(answers), nil })
	if err != nil || n != len(answers) {
		t.Errorf("Follow: %v after %d polls, want nil after %d", err, n, len(answers))
	}
	err = hosted.Follow(t.Context(), hosted.Backoff{Min: time.Millisecond, Max: time.Millisecond},
		func(context.Context) (int, error) { return 0, executor.Errorf(executor.InvalidInput, "no") },
		func(int) (string, bool, error) { return "", false, nil })
	if !executor.Is(err, executor.InvalidInput) {
		t.Errorf("a permanent poll failure: %v", err)
	}
}

// TestHandOverPresigned: one of our artifacts in a store that presigns is
// handed over as its presigned URL when the service can reach it, read and
// inlined when it cannot; a refusal (another tenant's artifact) is the
// task's invalid input; other URLs are untouched.
func TestHandOverPresigned(t *testing.T) {
	t.Parallel()
	const ours = "/api/v1/artifacts/tasks/0197a5e0-0000-7000-8000-000000000001/image.png"
	for _, tc := range []struct {
		name, url, signed, want string
		err                     error
	}{
		{"public bucket", ours, "https://bucket.s3.amazonaws.com/tasks/x/image.png?X-Amz-Signature=1", "https://bucket.s3.amazonaws.com/tasks/x/image.png?X-Amz-Signature=1", nil},
		{"public base of ours", "https://compute.example.com" + ours, "https://cdn.example.com/p?sig=1", "https://cdn.example.com/p?sig=1", nil},
		{"private bucket", ours, "http://127.0.0.1:9000/b/tasks/x/image.png?X-Amz-Signature=1", "data:text/plain; charset=utf-8;base64,aW5wdXQ=", nil},
		{"not ours", "https://example.com/in.png", "", "https://example.com/in.png", nil},
		{"refused", ours, "", "", errors.New("artifact not found")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			job := &executor.Job{
				OpenInput: func(context.Context, string) ([]byte, error) { return []byte("input"), nil },
				PresignInput: func(_ context.Context, url string) (string, bool, error) {
					if tc.err != nil {
						return "", false, tc.err
					}
					return tc.signed, tc.signed != "", nil
				},
			}
			got, err := hosted.Common{}.HandOver(context.Background(), job, "image_url", tc.url, nil)
			if tc.err != nil {
				if executor.CategoryOf(err) != executor.InvalidInput {
					t.Fatalf("err %v (%s), want invalid input", err, executor.CategoryOf(err))
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("HandOver = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
