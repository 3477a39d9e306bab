package falfake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/computeserver/compute/internal/executor/internal/fakekit"
)

// fal's storage, as fal's Python client uses it by default (fal-ai/fal,
// projects/fal_client/src/fal_client/client.py at commit c6f0afa, branch
// main): CDNTokenManager POSTs {} to
// {REST_URL}/storage/auth/token?storage_type=fal-cdn-v3 with
// "Authorization: Key <FAL_KEY>" and reads token, token_type, base_url and
// expires_at (datetime.fromisoformat); _upload_v3 POSTs the file's bytes
// to {CDN_URL}/files/upload with "Authorization: {token_type} {token}",
// Content-Type and X-Fal-File-Name, and reads access_url. The fake serves
// both hosts' routes on one address: a client's storage_url and cdn_url
// both point at it.
//
// ⚠ Unconfirmed (not in the client): the token's lifetime (TokenTTL,
// default 1 h), the token_type value ("Bearer" here), the status of a
// successful upload (200 here), the CDN's error bodies ({"detail"} as the
// queue's) and its size limit (none here unless MaxUploadBytes), and how
// long an uploaded file lives (never expiring here unless UploadTTL).
// Not reproduced: multipart uploads ({base_url}/files/upload/multipart,
// parts, complete; the client uses them above 100 MiB) and the legacy
// storage/upload/initiate route (the client's fallback).

// Upload is a recorded upload (or refused upload) to the fake CDN.
type Upload struct {
	// Name and ContentType are the X-Fal-File-Name and Content-Type sent.
	Name, ContentType string
	// Size and SHA256 describe the body received.
	Size   int64
	SHA256 string
	// URL is the access_url answered (empty when refused).
	URL string
	// Code is the HTTP status answered.
	Code int
}

// FailNextUpload makes the next n uploads answer code without storing
// anything (429 with Retry-After: 1; 502/503/504 with an nginx page).
func (f *Fake) FailNextUpload(n, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failUpload = append(f.failUpload, code)
	}
}

// FailNextToken makes the next n storage token requests answer code.
func (f *Fake) FailNextToken(n, code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		f.failToken = append(f.failToken, code)
	}
}

// ExpireTokens makes every storage token issued so far invalid now, as
// if its expires_at had passed.
func (f *Fake) ExpireTokens() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.tokens)
}

// Tokens returns how many storage tokens were issued.
func (f *Fake) Tokens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokensIssued
}

// Uploads returns every upload received, in order.
func (f *Fake) Uploads() []Upload {
	return f.uploads.All()
}

// Uploaded returns the bytes of a file uploaded to the fake, by the
// access_url it answered, so a fake model can check what it received.
func (f *Fake) Uploaded(url string) ([]byte, bool) {
	_, p, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://"), "/")
	data, _, ok := f.files.Get("/" + p)
	return data, ok
}

// failLocked pops the next injected failure of q.
func failLocked(q *[]int) int {
	if len(*q) == 0 {
		return 0
	}
	code := (*q)[0]
	*q = (*q)[1:]
	return code
}

// fail answers an injected failure.
func fail(w http.ResponseWriter, code int) {
	switch code {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "1")
		fakekit.WriteJSON(w, code, map[string]string{"detail": "Rate limit exceeded"})
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		fmt.Fprintf(w, "<html><body><center><h1>%d %s</h1></center><hr><center>nginx</center></body></html>\n", code, http.StatusText(code))
	default:
		fakekit.WriteJSON(w, code, map[string]string{"detail": http.StatusText(code)})
	}
}

// storageToken answers POST /storage/auth/token: a token for the CDN,
// for a request with a valid fal key.
func (f *Fake) storageToken(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.authorize(r); !ok {
		fakekit.WriteJSON(w, http.StatusUnauthorized, map[string]string{"detail": "Missing or invalid Authorization header: expected 'Key <FAL_KEY>'"})
		return
	}
	if st := r.URL.Query().Get("storage_type"); st != "fal-cdn-v3" {
		fakekit.WriteJSON(w, http.StatusBadRequest, map[string]string{"detail": "unsupported storage_type " + st})
		return
	}
	f.mu.Lock()
	if code := failLocked(&f.failToken); code != 0 {
		f.mu.Unlock()
		fail(w, code)
		return
	}
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	token := hex.EncodeToString(raw)
	expires := time.Now().Add(f.cfg.TokenTTL)
	f.tokens[token] = expires
	f.tokensIssued++
	f.mu.Unlock()
	fakekit.WriteJSON(w, http.StatusOK, map[string]string{
		"token": token, "token_type": "Bearer", "base_url": fakekit.BaseURL(r),
		"expires_at": expires.UTC().Format(time.RFC3339Nano),
	})
}

// upload answers POST /files/upload: the body is stored and served at
// the access_url answered.
func (f *Fake) upload(w http.ResponseWriter, r *http.Request) {
	up := Upload{Name: r.Header.Get("X-Fal-File-Name"), ContentType: r.Header.Get("Content-Type")}
	refuse := func(code int, detail string) {
		up.Code = code
		f.uploads.Add(up)
		if detail == "" {
			fail(w, code)
			return
		}
		fakekit.WriteJSON(w, code, map[string]string{"detail": detail})
	}
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	exp, known := f.tokens[token]
	code := 0
	if known && time.Now().Before(exp) {
		code = failLocked(&f.failUpload)
	}
	f.mu.Unlock()
	switch {
	case !known || !time.Now().Before(exp):
		refuse(http.StatusUnauthorized, "Invalid or expired token")
		return
	case code != 0:
		refuse(code, "")
		return
	case f.cfg.MaxUploadBytes > 0 && r.ContentLength > f.cfg.MaxUploadBytes:
		refuse(http.StatusRequestEntityTooLarge, "File too large")
		return
	}
	limit := int64(1 << 40)
	if f.cfg.MaxUploadBytes > 0 {
		limit = f.cfg.MaxUploadBytes
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		refuse(http.StatusBadRequest, "reading the body: "+err.Error())
		return
	}
	if int64(len(data)) > limit {
		refuse(http.StatusRequestEntityTooLarge, "File too large")
		return
	}
	sum := sha256.Sum256(data)
	up.Size, up.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
	ct := up.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	ext := path.Ext(up.Name)
	if strings.ContainsFunc(ext[min(1, len(ext)):], func(c rune) bool { return !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') }) {
		ext = ""
	}
	p := f.files.Put(data, ct, ext, f.cfg.UploadTTL)
	up.URL, up.Code = fakekit.BaseURL(r)+p, http.StatusOK
	f.uploads.Add(up)
	fakekit.WriteJSON(w, http.StatusOK, map[string]string{"access_url": up.URL})
}
