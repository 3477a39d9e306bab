// Package webhook delivers task events to HTTP receivers: which deliveries
// an event gets (targeting), signing per the Standard Webhooks
// specification, delivery with retries, fair across destinations with a
// circuit breaker per destination, and the record of every attempt.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts a Standard Webhooks secret; the rest is base64.
const SecretPrefix = "whsec_"

// ErrBadSecret means a secret is not "whsec_" followed by base64 of at
// least 24 bytes.
var ErrBadSecret = errors.New("webhook secret must be whsec_ followed by base64 of at least 24 bytes")

// Signer signs requests per the Standard Webhooks specification:
// webhook-signature is "v1," + base64(HMAC-SHA256(key, id.timestamp.body)).
type Signer struct {
	key []byte
}

// NewSigner parses a "whsec_…" secret.
func NewSigner(secret string) (*Signer, error) {
	raw, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok {
		return nil, ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) < 24 {
		return nil, ErrBadSecret
	}
	return &Signer{key: key}, nil
}

// Sign returns the webhook-signature header value for a message.
func (s *Signer) Sign(id string, at time.Time, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	fmt.Fprintf(mac, "%s.%d.", id, at.Unix())
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// SetHeaders sets the three Standard Webhooks headers on h.
func (s *Signer) SetHeaders(h http.Header, id string, at time.Time, body []byte) {
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	h.Set("webhook-signature", s.Sign(id, at, body))
}

// SignAll returns the webhook-signature header value signed with every
// secret, space-separated, as the Standard Webhooks specification allows
// during a secret rotation: a receiver accepts the request when any
// signature matches a secret it holds.
func SignAll(secrets []string, id string, at time.Time, body []byte) (string, error) {
	sigs := make([]string, len(secrets))
	for i, secret := range secrets {
		s, err := NewSigner(secret)
		if err != nil {
			return "", err
		}
		sigs[i] = s.Sign(id, at, body)
	}
	return strings.Join(sigs, " "), nil
}

// NewSecret returns a new random secret: "whsec_" and base64 of 32 bytes.
func NewSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}
