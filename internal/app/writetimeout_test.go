package app

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// serveOnLoopback serves h on a loopback port until the test ends.
func serveOnLoopback(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// TestWriteTimeoutCutsClientsThatNeverRead checks that a response to a
// client that sends a request and never reads is cut off by the write
// deadline, freeing its handler (issue 10: such clients pinned 5.4 GB),
// while an event stream, which sets its own deadlines, is not.
func TestWriteTimeoutCutsClientsThatNeverRead(t *testing.T) {
	t.Parallel()
	const d = 300 * time.Millisecond
	done := make(chan error, 1)
	chunk := []byte(strings.Repeat("x", 1<<20))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for range 256 { // 256 MiB: far more than the sockets buffer
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	})
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Minute))
		w.WriteHeader(http.StatusOK)
		for i := range 3 {
			time.Sleep(d)
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				done <- err
				return
			}
			_ = http.NewResponseController(w).Flush()
		}
		done <- nil
	})
	addr := serveOnLoopback(t, writeTimeout(mux, d))

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("the write to a client that never reads ended with %v, want a timeout", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler writing to a client that never reads was never cut off")
	}

	res, err := http.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	lines := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data:") {
			lines++
		}
	}
	if err := <-done; err != nil || lines != 3 {
		t.Errorf("an event stream idle for longer than the write timeout: %d events, handler error %v; want 3 and none", lines, err)
	}
}
