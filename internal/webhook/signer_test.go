package webhook_test

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/computeserver/compute/internal/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestSignatureVerifiesWithTheReferenceLibrary(t *testing.T) {
	t.Parallel()
	s, err := webhook.NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"event_type":"generation_status_update","status":"completed"}`)
	h := http.Header{}
	s.SetHeaders(h, "42", time.Now(), body)
	if err := verifier.Verify(body, h); err != nil {
		t.Fatalf("reference verifier refused our signature: %v", err)
	}
	// Any change to the body, the id or the timestamp breaks it.
	if err := verifier.Verify(append(body, ' '), h); err == nil {
		t.Error("a changed body verified")
	}
	h2 := h.Clone()
	h2.Set("webhook-id", "43")
	if err := verifier.Verify(body, h2); err == nil {
		t.Error("a changed id verified")
	}
	old := http.Header{}
	s.SetHeaders(old, "42", time.Now().Add(-time.Hour), body)
	if err := verifier.Verify(body, old); err == nil {
		t.Error("a stale timestamp verified")
	}
}

func TestSignMatchesTheSpecExample(t *testing.T) {
	t.Parallel()
	// The reference library signs the same message; both must agree byte
	// for byte.
	s, _ := webhook.NewSigner(secret)
	ref, _ := standardwebhooks.NewWebhook(secret)
	at := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	want, err := ref.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", at, body); got != want {
		t.Fatalf("Sign = %s, reference %s", got, want)
	}
}

func TestNewSignerRefusesBadSecrets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, secret string }{
		{"no prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		{"not base64", "whsec_!!!!"},
		{"too short", "whsec_" + base64.StdEncoding.EncodeToString([]byte("short"))},
		{"empty", ""},
	} {
		if _, err := webhook.NewSigner(tc.secret); err == nil || !strings.Contains(err.Error(), "whsec_") {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

// TestSignAllVerifiesWithEitherSecret: during a rotation's overlap the
// header carries both signatures, and the reference library accepts the
// request with the old secret as with the new one, and with no other.
func TestSignAllVerifiesWithEitherSecret(t *testing.T) {
	t.Parallel()
	fresh, old := webhook.NewSecret(), webhook.NewSecret()
	if fresh == old || !strings.HasPrefix(fresh, webhook.SecretPrefix) {
		t.Fatalf("NewSecret gave %q and %q", fresh, old)
	}
	body := []byte(`{"event_type":"generation_status_update"}`)
	at := time.Now()
	sig, err := webhook.SignAll([]string{fresh, old}, "7", at, body)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(sig)); n != 2 {
		t.Fatalf("webhook-signature %q has %d signatures, want 2", sig, n)
	}
	h := http.Header{}
	h.Set("webhook-id", "7")
	h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("webhook-signature", sig)
	for _, s := range []string{fresh, old} {
		v, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Verify(body, h); err != nil {
			t.Errorf("the reference verifier with one of the two secrets refused: %v", err)
		}
	}
	other, _ := standardwebhooks.NewWebhook(webhook.NewSecret())
	if err := other.Verify(body, h); err == nil {
		t.Error("a third secret verified")
	}
	if _, err := webhook.SignAll([]string{fresh, "nope"}, "7", at, body); err == nil {
		t.Error("SignAll accepted a bad secret")
	}
}
