package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/artifact"
	"github.com/computeserver/compute/internal/netguard"
)

// newFetcher returns a fetcher over a fresh local store holding one
// artifact, with a client allowed to reach loopback test servers.
func newFetcher(t *testing.T) (*artifact.Fetcher, string) {
	t.Helper()
	st, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := artifact.TaskKey("0b6c4f5e-8d1a-4c1e-9a55-3f1d2a6b7c8d", "image.png")
	if _, err := st.Put(context.Background(), key, "image/png", []byte("stored bytes")); err != nil {
		t.Fatal(err)
	}
	return &artifact.Fetcher{
		Store:         st,
		Client:        netguard.NewHTTPClient(netguard.Policy{AllowPrivate: true}, 5*time.Second),
		PublicBaseURL: "https://compute.example.com/",
		MaxBytes:      1024,
	}, key
}

func TestFetcherReadsOwnArtifactsFromStore(t *testing.T) {
	t.Parallel()
	f, key := newFetcher(t)
	// No HTTP: the client would fail on these hosts.
	f.Client = &http.Client{Transport: failingTransport{t}}
	tests := []struct {
		name string
		url  string
	}{
		{name: "path", url: "/api/v1/artifacts/" + key},
		{name: "public URL", url: "https://compute.example.com/api/v1/artifacts/" + key},
		{name: "public URL with query", url: "https://COMPUTE.example.com/api/v1/artifacts/" + key + "?sig=abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, ct, err := f.Open(context.Background(), "", tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != "stored bytes" || ct != "image/png" {
				t.Errorf("got %q %q", data, ct)
			}
		})
	}
}

func TestFetcherPublicBaseWithPath(t *testing.T) {
	t.Parallel()
	f, key := newFetcher(t)
	f.Client = &http.Client{Transport: failingTransport{t}}
	f.PublicBaseURL = "https://example.com/compute"
	data, _, err := f.Open(context.Background(), "", "https://example.com/compute/api/v1/artifacts/"+key)
	if err != nil || string(data) != "stored bytes" {
		t.Fatalf("got %q, %v", data, err)
	}
}

func TestFetcherArtifactErrors(t *testing.T) {
	t.Parallel()
	f, _ := newFetcher(t)
	f.Client = &http.Client{Transport: failingTransport{t}}
	tests := []struct {
		name string
		url  string
		want error
	}{
		{name: "missing", url: "/api/v1/artifacts/tasks/x/nothing.png", want: artifact.ErrNotFound},
		{name: "traversal", url: "/api/v1/artifacts/tasks/../../etc/passwd", want: artifact.ErrInvalidKey},
		{name: "encoded traversal", url: "/api/v1/artifacts/tasks/%2e%2e/%2e%2e/etc/passwd", want: artifact.ErrInvalidKey},
		{name: "other path", url: "/etc/passwd", want: artifact.ErrUnsupportedURL},
		{name: "file scheme", url: "file:///etc/passwd", want: artifact.ErrUnsupportedURL},
		{name: "no host", url: "https:///x.png", want: artifact.ErrUnsupportedURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := f.Open(context.Background(), "", tt.url)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFetcherArtifactTooLarge(t *testing.T) {
	t.Parallel()
	f, key := newFetcher(t)
	f.MaxBytes = 5
	_, _, err := f.Open(context.Background(), "", "/api/v1/artifacts/"+key)
	if !errors.Is(err, artifact.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestFetcherHTTP(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("x"), 2048)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok.png", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write([]byte("remote bytes"))
	})
	mux.HandleFunc("/untyped", func(w http.ResponseWriter, _ *http.Request) {
		w.Header()["Content-Type"] = nil // no sniffing by the server
		w.Write([]byte("\x89PNG\r\n\x1a\nrest"))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { w.Write(big) })
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < 4; i++ {
			w.Write(big[:512])
			w.(http.Flusher).Flush()
		}
		w.Write([]byte("!"))
	})
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/down", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "try later", http.StatusServiceUnavailable)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f, _ := newFetcher(t)

	tests := []struct {
		name      string
		path      string
		wantData  string
		wantType  string
		wantErr   error
		wantCode  int
		temporary bool
	}{
		{name: "ok", path: "/ok.png", wantData: "remote bytes", wantType: "image/png"},
		{name: "sniffed type", path: "/untyped", wantData: "\x89PNG\r\n\x1a\nrest", wantType: "image/png"},
		{name: "content-length over limit", path: "/big", wantErr: artifact.ErrTooLarge},
		{name: "chunked over limit", path: "/big-chunked", wantErr: artifact.ErrTooLarge},
		{name: "404", path: "/missing", wantCode: 404},
		{name: "503", path: "/down", wantCode: 503, temporary: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data, ct, err := f.Open(context.Background(), "", srv.URL+tt.path+"?token=secret")
			if tt.wantCode != 0 {
				var se *artifact.StatusError
				if !errors.As(err, &se) || se.StatusCode != tt.wantCode || se.Temporary() != tt.temporary {
					t.Fatalf("got %v, want status %d (temporary %v)", err, tt.wantCode, tt.temporary)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d %s", tt.wantCode, http.StatusText(tt.wantCode))) {
					t.Errorf("error does not name the status: %v", err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error leaks the query string: %v", err)
				}
				return
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(data) != tt.wantData || ct != tt.wantType {
				t.Errorf("got %q %q, want %q %q", data, ct, tt.wantData, tt.wantType)
			}
		})
	}
}

func TestFetcherDefaultPolicyRefusesLoopback(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write([]byte("internal"))
	}))
	t.Cleanup(srv.Close)
	for _, client := range []*http.Client{nil, netguard.NewHTTPClient(netguard.Policy{}, 5*time.Second)} {
		f := &artifact.Fetcher{Client: client}
		_, _, err := f.Open(context.Background(), "", srv.URL+"/x.png?token=secret")
		if !errors.Is(err, netguard.ErrForbiddenDestination) {
			t.Fatalf("client %v: got %v, want ErrForbiddenDestination", client, err)
		}
		if !strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "secret") {
			t.Errorf("error should name the address and hide the query: %v", err)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("server was reached %d times", hits.Load())
	}
}

func TestFetcherHonoursContext(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	f, _ := newFetcher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, _, err := f.Open(ctx, "", srv.URL+"/slow")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want context.DeadlineExceeded", err)
	}
}

type failingTransport struct{ t *testing.T }

func (ft failingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ft.t.Errorf("unexpected HTTP request to %s", r.URL)
	return nil, errors.New("no HTTP in this test")
}

func TestFetcherRefusesOtherTenantsArtifacts(t *testing.T) {
	t.Parallel()
	st, err := artifact.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := artifact.TaskKey("01a219db-3e96-7ead-9359-7651978f18c0", "a.txt")
	if _, err := st.Put(context.Background(), key, "text/plain", []byte("secret")); err != nil {
		t.Fatal(err)
	}
	f := &artifact.Fetcher{Store: st, Owner: func(_ context.Context, k string) (string, error) {
		if k != key {
			return "", artifact.ErrNotFound
		}
		return "tenant-a", nil
	}}
	for _, tc := range []struct {
		name, tenant string
		ok           bool
	}{
		{"owner", "tenant-a", true},
		{"other tenant", "tenant-b", false},
		{"task without tenant", "", true},
	} {
		data, _, err := f.Open(context.Background(), tc.tenant, "/api/v1/artifacts/"+key)
		if tc.ok && (err != nil || string(data) != "secret") {
			t.Errorf("%s: got %q, %v", tc.name, data, err)
		}
		if !tc.ok && !errors.Is(err, artifact.ErrNotFound) {
			t.Errorf("%s: err = %v, want artifact.ErrNotFound", tc.name, err)
		}
	}
}
