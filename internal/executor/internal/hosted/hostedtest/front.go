package hostedtest

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// Front serves a fake on a loopback port behind a switch that takes the
// service down (every answer a 502 from the proxy in front of it) and a
// tap that tells Behaviours about the cancels the fake receives.
type Front struct {
	// URL is the base URL to give the executor.
	URL  string
	down atomic.Bool
}

// Serve starts a Front for fake. cancelOf returns the external id a
// request cancels, if it is a cancel; intercept, when not nil, may answer
// a request itself (it reports whether it did).
func Serve(t *testing.T, fake http.Handler, jobs *Behaviours, cancelOf func(*http.Request) (string, bool), intercept func(http.ResponseWriter, *http.Request) bool) *Front {
	t.Helper()
	f := &Front{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			http.Error(w, "<html><body><h1>502 Bad Gateway</h1></body></html>", http.StatusBadGateway)
			return
		}
		if intercept != nil && intercept(w, r) {
			return
		}
		if id, ok := cancelOf(r); ok {
			defer jobs.Cancelled(id)
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	f.URL = srv.URL
	return f
}

// SetAvailable takes the service down (false) or up; it has the shape of
// executortest.Adapter.SetAvailable.
func (f *Front) SetAvailable(_ *testing.T, up bool) { f.down.Store(!up) }
