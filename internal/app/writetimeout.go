package app

import (
	"net/http"
	"time"
)

// writeTimeout gives every response but an event stream a write deadline
// of d that each write extends: a client that stops reading is cut off
// after d, so it cannot pin the response's memory and goroutine, while a
// slow but steady download (an artifact) goes on. http.Server's
// WriteTimeout cannot do this per route: it would end the event streams,
// which set their own deadline on every flush (api's sseWriteTimeout).
func writeTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(d))
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, d: d}, r)
	})
}

// deadlineWriter extends the write deadline before each write of a
// response that is not an event stream.
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if w.Header().Get("Content-Type") != "text/event-stream" {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.d))
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush implements http.Flusher for handlers that assert it.
func (w *deadlineWriter) Flush() { _ = w.rc.Flush() }
