package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/computeserver/compute/internal/artifact"
)

// TestFetcherOpenStream: an artifact streams with its size; one over the
// limit fails at once; a download streams with its Content-Length (-1 when
// chunked); a chunked body past the limit fails its Read with ErrTooLarge;
// a non-2xx answer is a *StatusError.
func TestFetcherOpenStream(t *testing.T) {
	t.Parallel()
	f, key := newFetcher(t)
	rc, size, err := f.OpenStream(context.Background(), "", "/api/v1/artifacts/"+key)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "stored bytes" || size != int64(len("stored bytes")) {
		t.Errorf("artifact: %q, size %d, %v", data, size, err)
	}

	small := *f
	small.MaxBytes = 5
	if _, _, err := small.OpenStream(context.Background(), "", "/api/v1/artifacts/"+key); !errors.Is(err, artifact.ErrTooLarge) {
		t.Errorf("artifact over the limit: %v, want ErrTooLarge", err)
	}

	big := bytes.Repeat([]byte("y"), 2048)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.Write(big[:1000]) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { w.Write(big) })
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, _ *http.Request) {
		for range 4 {
			w.Write(big[:512])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/missing", http.NotFound)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	rc, size, err = f.OpenStream(context.Background(), "", srv.URL+"/ok")
	if err != nil {
		t.Fatal(err)
	}
	data, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(data, big[:1000]) || size != 1000 {
		t.Errorf("download: %d bytes, size %d, %v", len(data), size, err)
	}
	if _, _, err := f.OpenStream(context.Background(), "", srv.URL+"/big"); !errors.Is(err, artifact.ErrTooLarge) {
		t.Errorf("download over the limit: %v, want ErrTooLarge", err)
	}
	rc, size, err = f.OpenStream(context.Background(), "", srv.URL+"/big-chunked")
	if err != nil || size != -1 {
		t.Fatalf("chunked: size %d, %v", size, err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, artifact.ErrTooLarge) {
		t.Errorf("chunked read past the limit: %v, want ErrTooLarge", err)
	}
	var se *artifact.StatusError
	if _, _, err := f.OpenStream(context.Background(), "", srv.URL+"/missing"); !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Errorf("missing: %v, want a 404 StatusError", err)
	}
}
