package cog

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestCallbacksFirstTerminalWins: webhooks repeat and arrive out of order
// (reference §5.2, Cog retries its terminal webhook up to 12 times): a
// state after the terminal one is dropped, and each arrival wakes the
// waiter.
func TestCallbacksFirstTerminalWins(t *testing.T) {
	t.Parallel()
	c := NewCallbacks()
	c.expect("tok", "secret")
	post := func(body string) int {
		r := httptest.NewRequest(http.MethodPost, CallbackPath+"tok", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer secret")
		w := httptest.NewRecorder()
		c.ServeHTTP(w, r)
		return w.Code
	}
	_, woke := c.latest("tok")
	if code := post(`{"id":"p","status":"processing","logs":"step 1/2"}`); code != http.StatusOK {
		t.Fatalf("processing: %d", code)
	}
	select {
	case <-woke:
	default:
		t.Fatal("a webhook did not wake the waiter")
	}
	for _, body := range []string{`{"id":"p","status":"succeeded","output":["data:,x"]}`, `{"id":"p","status":"processing"}`, `{"id":"p","status":"failed"}`} {
		if code := post(body); code != http.StatusOK {
			t.Fatalf("%s: %d", body, code)
		}
	}
	if p, _ := c.latest("tok"); p == nil || p.Status != statusSucceeded {
		t.Errorf("latest %+v, want the first terminal state, succeeded", p)
	}
	if code := post(`not json`); code != http.StatusBadRequest {
		t.Errorf("a body that is no prediction: %d, want 400", code)
	}
	c.forget("tok")
	if code := post(`{"id":"p","status":"succeeded"}`); code != http.StatusNotFound {
		t.Errorf("after the run ended: %d, want 404", code)
	}
}
