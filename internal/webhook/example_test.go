package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/computeserver/compute/internal/webhook"
)

// A receiver verifies each request with the Standard Webhooks library
// before trusting its body, and deduplicates on webhook-id, which stays the
// same on every retry of an event. This is the receiver of the README.
func Example_receiver() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // COMPUTE_WEBHOOK_SECRET
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		panic(err)
	}
	receive := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := wh.Verify(body, r.Header); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		var ev struct {
			TaskID string `json:"task_id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		fmt.Println("event", r.Header.Get("webhook-id"), "task", ev.TaskID, ev.Status)
		w.WriteHeader(http.StatusNoContent)
	}

	// What the server sends: the event body, signed.
	signer, err := webhook.NewSigner(secret)
	if err != nil {
		panic(err)
	}
	body := []byte(`{"event_type":"generation_status_update","task_id":"01a219db-3e96-7ead-9359-7651978f18c0","status":"completed"}`)
	for _, tampered := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodPost, "/hooks/compute", bytes.NewReader(body))
		signer.SetHeaders(req.Header, "42", time.Now(), body)
		if tampered {
			req.Body = io.NopCloser(bytes.NewReader(bytes.Replace(body, []byte("completed"), []byte("failed"), 1)))
		}
		res := httptest.NewRecorder()
		receive(res, req)
		fmt.Println(res.Code)
	}
	// Output:
	// event 42 task 01a219db-3e96-7ead-9359-7651978f18c0 completed
	// 204
	// 401
}
