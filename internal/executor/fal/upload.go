package fal

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/executor"
	"github.com/computeserver/compute/internal/executor/internal/hosted"
)

// DefaultStorageURL is fal's REST API, which hands out storage tokens;
// DefaultCDNURL is fal's v3 CDN, which takes uploads (fal_client REST_URL
// and CDN_URL).
const (
	DefaultStorageURL = "https://rest.fal.ai"
	DefaultCDNURL     = "https://v3.fal.media"
)

// tokenMargin is how long before its expires_at a storage token is
// renewed, so that it does not expire mid-upload.
const tokenMargin = time.Minute

// uploader puts inputs in fal's CDN storage the way fal's Python client
// does by default (fal-ai/fal, projects/fal_client/src/fal_client/client.py
// at c6f0afa: CDNTokenManager and _upload_v3): a short-lived token from
// POST {storage_url}/storage/auth/token?storage_type=fal-cdn-v3 (body {},
// Authorization: Key FAL_KEY) answering {token, token_type, base_url,
// expires_at}, kept until it expires; then the file's bytes as the body
// of POST {cdn_url}/files/upload with Authorization: {token_type}
// {token}, its Content-Type and X-Fal-File-Name, answering
// {access_url}, the URL handed to the model.
type uploader struct {
	api     hosted.Client // authorized by the fal key
	hc      *http.Client
	storage string
	cdn     string
	mu      sync.Mutex
	token   string // "{token_type} {token}"
	expires time.Time
}

func newUploader(s Settings, hc *http.Client) *uploader {
	trim := func(u, def string) string {
		if u = strings.TrimRight(u, "/"); u == "" {
			return def
		}
		return u
	}
	return &uploader{
		api: hosted.Client{HTTP: hc, Authorization: "Key " + s.Key}, hc: hc,
		storage: trim(s.StorageURL, DefaultStorageURL), cdn: trim(s.CDNURL, DefaultCDNURL),
	}
}

// authorization returns the storage token's Authorization value, asking
// fal for a new token when there is none or it is about to expire.
func (u *uploader) authorization(ctx context.Context) (string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.token != "" && time.Until(u.expires) > tokenMargin {
		return u.token, nil
	}
	resp, err := u.api.Do(ctx, http.MethodPost, u.storage+"/storage/auth/token?storage_type=fal-cdn-v3", map[string]any{}, nil)
	if err != nil {
		return "", err
	}
	if resp.Code < 200 || resp.Code > 299 {
		return "", hosted.StatusError("getting a fal storage token", resp)
	}
	var tok struct {
		Token     string `json:"token"`
		TokenType string `json:"token_type"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := resp.Decode(&tok); err != nil {
		return "", err
	}
	if tok.Token == "" || tok.TokenType == "" {
		return "", executor.Errorf(executor.ProviderError, "fal's storage token answer lacks token or token_type")
	}
	// Python's datetime.fromisoformat reads the time; RFC 3339 covers what
	// it accepts with a zone. Unreadable: use the token once.
	exp, err := time.Parse(time.RFC3339Nano, tok.ExpiresAt)
	if err != nil {
		exp = time.Time{}
	}
	u.token, u.expires = tok.TokenType+" "+tok.Token, exp
	return u.token, nil
}

// forget drops the cached token (fal refused it).
func (u *uploader) forget(token string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.token == token {
		u.token = ""
	}
}

// Upload implements hosted.Uploader: the file's bytes are streamed as the
// upload's body.
func (u *uploader) Upload(ctx context.Context, f hosted.File) (string, error) {
	auth, err := u.authorization(ctx)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.cdn+"/files/upload", f.Body)
	if err != nil {
		return "", executor.Errorf(executor.InvalidInput, "uploading to fal: %w", err)
	}
	if f.Size >= 0 {
		req.ContentLength = f.Size
	}
	req.Header.Set("Content-Type", f.ContentType)
	req.Header.Set("X-Fal-File-Name", f.Name)
	req.Header.Set("Accept", "application/json")
	cdn := hosted.Client{HTTP: u.hc, Authorization: auth}
	resp, err := cdn.Send(req)
	if err != nil {
		return "", err
	}
	if resp.Code == http.StatusUnauthorized || resp.Code == http.StatusForbidden {
		u.forget(auth) // the next attempt asks for a new token
	}
	if resp.Code < 200 || resp.Code > 299 {
		return "", hosted.StatusError("uploading "+f.Name+" to fal storage", resp)
	}
	var out struct {
		AccessURL string `json:"access_url"`
	}
	if err := resp.Decode(&out); err != nil {
		return "", err
	}
	if out.AccessURL == "" {
		return "", executor.Errorf(executor.ProviderError, "fal's upload answer lacks access_url")
	}
	return out.AccessURL, nil
}
