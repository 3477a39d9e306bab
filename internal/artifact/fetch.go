package artifact

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/computeserver/compute/internal/netguard"
)

// DefaultMaxFetchBytes is the size limit of a fetched input when
// Fetcher.MaxBytes is 0: 50 MiB.
const DefaultMaxFetchBytes int64 = 50 << 20

// CheckInputURL reports whether raw is an input a task may name: an
// artifact path of this server (PathPrefix and a valid key) or an absolute
// http(s) URL (netguard.CheckURL; the address itself is checked against the
// outbound policy when it is fetched). Task types call it from Validate, so
// a malformed input is refused at create (422), not found out when the
// task runs.
func CheckInputURL(raw string) error {
	if key, ok := strings.CutPrefix(raw, PathPrefix); ok {
		if err := ValidateKey(key); err != nil {
			return fmt.Errorf("not a valid artifact path: %w", err)
		}
		return nil
	}
	if strings.HasPrefix(raw, "s3://") {
		// Whether it is this server's bucket is known when it is read.
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.RawQuery != "" || u.User != nil || ValidateKey(strings.TrimPrefix(u.Path, "/")) != nil {
			return errors.New("not a valid s3:// URL: want s3://BUCKET/PREFIX/tasks/<task id>/<name> of this server's artifact store")
		}
		return nil
	}
	if err := netguard.CheckURL(raw); err != nil {
		return fmt.Errorf("must be an http(s) URL, an s3:// URL of this server's artifact store or an artifact path: %w", err)
	}
	return nil
}

// URL returns the URL clients are given for the artifact at key: under
// publicBase (a public or CDN view of the store,
// COMPUTE_ARTIFACTS_PUBLIC_URL) when set, else the API's artifact path
// under apiBase ("" for a relative URL). Both are stable: they never
// expire.
func URL(apiBase, publicBase, key string) string {
	if publicBase != "" {
		return strings.TrimSuffix(publicBase, "/") + "/" + key
	}
	return strings.TrimSuffix(apiBase, "/") + PathPrefix + key
}

// PathPrefix is the API path under which artifacts are served; a URL under
// it (on the server's own public base URL) is read from the store directly.
const PathPrefix = "/api/v1/artifacts/"

// ErrTooLarge means an input is larger than the fetcher's limit.
var ErrTooLarge = errors.New("input too large")

// ErrUnsupportedURL means a URL is neither an http(s) URL nor an artifact
// path.
var ErrUnsupportedURL = errors.New("unsupported input URL")

// StatusError is a non-2xx answer to a fetch.
type StatusError struct {
	// URL is the fetched URL without its query string (which may hold a
	// signature).
	URL string
	// StatusCode is the HTTP status code.
	StatusCode int
}

// Error implements error.
func (e *StatusError) Error() string {
	return fmt.Sprintf("fetching %s: HTTP %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
}

// Temporary reports whether retrying later may succeed: a 5xx, 408 or 429.
func (e *StatusError) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests
}

// Fetcher opens the inputs tasks name by URL: artifacts of this server are
// read from the Store (artifact paths, URLs under the API's or the
// store's public base, s3:// URLs of an S3 store), anything else is
// downloaded with Client.
type Fetcher struct {
	// Store holds this server's artifacts.
	Store Store
	// Client downloads other URLs. It should come from
	// netguard.NewHTTPClient; nil means one with the default (public
	// addresses only) policy and a 2-minute timeout, never
	// http.DefaultClient.
	Client *http.Client
	// PublicBaseURL is the server's external base URL (e.g.
	// "https://compute.example.com"); URLs under PublicBaseURL+PathPrefix
	// are read from Store without HTTP. Artifact paths ("/api/v1/artifacts/<key>")
	// are always read from Store.
	PublicBaseURL string
	// PublicArtifactsURL is the base of the public or CDN view of Store
	// (COMPUTE_ARTIFACTS_PUBLIC_URL); URLs under it are read from Store
	// without HTTP, with the same ownership check.
	PublicArtifactsURL string
	// MaxBytes is the size limit of one input (0: DefaultMaxFetchBytes).
	MaxBytes int64
	// Owner returns the tenant of the task a task artifact key belongs to.
	// When set, a task of one tenant cannot read another tenant's
	// artifacts (the server always sets it; nil skips the check, for
	// tests of processors alone).
	Owner func(ctx context.Context, key string) (tenantID string, err error)
}

var defaultClient = sync.OnceValue(func() *http.Client {
	return netguard.NewHTTPClient(netguard.Policy{}, 2*time.Minute)
})

// Open returns the content and media type of the input at rawURL for a
// task of tenant tenantID ("" for a task without tenant, which may read any
// artifact). Errors wrap ErrUnsupportedURL, ErrInvalidKey, ErrNotFound,
// ErrTooLarge, netguard.ErrForbiddenDestination or *StatusError where they
// apply; anything else (a network failure) may succeed when retried.
func (f *Fetcher) Open(ctx context.Context, tenantID, rawURL string) (data []byte, contentType string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrUnsupportedURL, err)
	}
	if key, ok := f.artifactKey(u); ok {
		if err := f.authorize(ctx, tenantID, key); err != nil {
			return nil, "", err
		}
		return f.openArtifact(ctx, key)
	}
	if u.Scheme == "s3" {
		return nil, "", fmt.Errorf("%w: %s is not in this server's artifact store", ErrUnsupportedURL, redact(u))
	}
	if err := netguard.CheckURL(rawURL); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrUnsupportedURL, err)
	}
	return f.download(ctx, u)
}

// OpenStream is Open without reading the input whole: it returns the
// input's body, which the caller closes, and its size (-1 when the server
// does not say). The size limit holds as in Open: an input known to be
// larger fails at once, a body that grows past it fails its Read with
// ErrTooLarge.
func (f *Fetcher) OpenStream(ctx context.Context, tenantID, rawURL string) (io.ReadCloser, int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrUnsupportedURL, err)
	}
	if key, ok := f.artifactKey(u); ok {
		if err := f.authorize(ctx, tenantID, key); err != nil {
			return nil, 0, err
		}
		if f.Store == nil {
			return nil, 0, fmt.Errorf("opening artifact %s: %w: no artifact store", key, ErrNotFound)
		}
		if err := ValidateKey(key); err != nil {
			return nil, 0, fmt.Errorf("opening artifact: %w", err)
		}
		rc, desc, err := f.Store.Open(ctx, key)
		if err != nil {
			return nil, 0, fmt.Errorf("opening artifact %s: %w", key, err)
		}
		if desc.Size > f.maxBytes() {
			rc.Close()
			return nil, 0, fmt.Errorf("artifact %s has %d bytes: %w (limit %d)", key, desc.Size, ErrTooLarge, f.maxBytes())
		}
		return limitedBody{rc, &limitReader{r: rc, left: f.maxBytes()}}, desc.Size, nil
	}
	if u.Scheme == "s3" {
		return nil, 0, fmt.Errorf("%w: %s is not in this server's artifact store", ErrUnsupportedURL, redact(u))
	}
	if err := netguard.CheckURL(rawURL); err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrUnsupportedURL, err)
	}
	resp, err := f.get(ctx, u)
	if err != nil {
		return nil, 0, err
	}
	limit := f.maxBytes()
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, 0, fmt.Errorf("fetching %s: %d bytes: %w (limit %d)", redact(u), resp.ContentLength, ErrTooLarge, limit)
	}
	return limitedBody{resp.Body, &limitReader{r: resp.Body, left: limit}}, resp.ContentLength, nil
}

// DefaultPresignTTL is how long a presigned URL of an input handed to a
// hosted service stays valid: long enough for a queued prediction to
// start, short enough that a leaked URL soon stops working.
const DefaultPresignTTL = time.Hour

// Presign returns a presigned GET URL of the input at rawURL when it is an
// artifact of this server in a store that presigns (S3), for a task of
// tenantID, valid for ttl; ok is false for any other input (a URL of
// elsewhere, the local store), which the caller hands over otherwise. A
// tenant's task cannot presign another tenant's artifact (ErrNotFound).
func (f *Fetcher) Presign(ctx context.Context, tenantID, rawURL string, ttl time.Duration) (signed string, ok bool, err error) {
	p, can := f.Store.(Presigner)
	if !can {
		return "", false, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", false, nil
	}
	key, mine := f.artifactKey(u)
	if !mine {
		return "", false, nil
	}
	if err := ValidateKey(key); err != nil {
		return "", false, fmt.Errorf("opening artifact: %w", err)
	}
	if err := f.authorize(ctx, tenantID, key); err != nil {
		return "", false, err
	}
	if _, err := f.Store.Stat(ctx, key); err != nil {
		return "", false, fmt.Errorf("opening artifact %s: %w", key, err)
	}
	signed, err = p.Presign(ctx, key, ttl)
	if err != nil {
		return "", false, err
	}
	return signed, true, nil
}

// limitedBody reads through a limitReader and closes the body under it.
type limitedBody struct {
	io.Closer
	r io.Reader
}

func (b limitedBody) Read(p []byte) (int, error) { return b.r.Read(p) }

// limitReader fails with ErrTooLarge once more than left bytes were read.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, fmt.Errorf("more than the input limit: %w", ErrTooLarge)
	}
	return n, err
}

// artifactKey returns the artifact key of u when it names one of this
// server's artifacts: a bare artifact path, an s3:// URL of the store, or
// a URL under PublicArtifactsURL or PublicBaseURL.
func (f *Fetcher) artifactKey(u *url.URL) (string, bool) {
	if u.Scheme == "" && u.Host == "" {
		if key, ok := strings.CutPrefix(u.Path, PathPrefix); ok {
			return key, true
		}
		return "", false
	}
	if loc, ok := f.Store.(Locator); ok {
		if key, ok := loc.KeyOf(u); ok {
			return key, true
		}
	}
	if key, ok := under(u, f.PublicArtifactsURL, "/"); ok {
		return key, true
	}
	return under(u, f.PublicBaseURL, PathPrefix)
}

// under returns the rest of u's path after base's path and sub, when u is
// on base's scheme and host.
func under(u *url.URL, base, sub string) (string, bool) {
	if base == "" {
		return "", false
	}
	b, err := url.Parse(strings.TrimRight(base, "/"))
	if err != nil || !strings.EqualFold(b.Scheme, u.Scheme) || !strings.EqualFold(b.Host, u.Host) {
		return "", false
	}
	return strings.CutPrefix(u.Path, b.Path+sub)
}

// authorize refuses a tenant's task an artifact of another tenant's task,
// answering as if it did not exist.
func (f *Fetcher) authorize(ctx context.Context, tenantID, key string) error {
	if f.Owner == nil || tenantID == "" {
		return nil
	}
	owner, err := f.Owner(ctx, key)
	if errors.Is(err, ErrNotFound) || (err == nil && owner != tenantID) {
		return fmt.Errorf("opening artifact %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("checking the owner of artifact %s: %w", key, err)
	}
	return nil
}

func (f *Fetcher) maxBytes() int64 {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return DefaultMaxFetchBytes
}

func (f *Fetcher) openArtifact(ctx context.Context, key string) ([]byte, string, error) {
	if f.Store == nil {
		return nil, "", fmt.Errorf("opening artifact %s: %w: no artifact store", key, ErrNotFound)
	}
	if err := ValidateKey(key); err != nil {
		return nil, "", fmt.Errorf("opening artifact: %w", err)
	}
	rc, desc, err := f.Store.Open(ctx, key)
	if err != nil {
		return nil, "", fmt.Errorf("opening artifact %s: %w", key, err)
	}
	defer rc.Close()
	if desc.Size > f.maxBytes() {
		return nil, "", fmt.Errorf("artifact %s has %d bytes: %w (limit %d)", key, desc.Size, ErrTooLarge, f.maxBytes())
	}
	data, err := readLimited(rc, f.maxBytes())
	if err != nil {
		return nil, "", fmt.Errorf("reading artifact %s: %w", key, err)
	}
	ct := desc.ContentType
	if ct == "" || ct == "application/octet-stream" {
		ct = http.DetectContentType(data)
	}
	return data, ct, nil
}

func (f *Fetcher) download(ctx context.Context, u *url.URL) ([]byte, string, error) {
	shown := redact(u)
	resp, err := f.get(ctx, u)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	limit := f.maxBytes()
	if resp.ContentLength > limit {
		return nil, "", fmt.Errorf("fetching %s: %d bytes: %w (limit %d)", shown, resp.ContentLength, ErrTooLarge, limit)
	}
	data, err := readLimited(resp.Body, limit)
	if err != nil {
		return nil, "", fmt.Errorf("fetching %s: %w", shown, err)
	}
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = http.DetectContentType(data)
	}
	return data, ct, nil
}

// get sends GET u and returns a 2xx answer with its body open; a non-2xx
// answer is a *StatusError.
func (f *Fetcher) get(ctx context.Context, u *url.URL) (*http.Response, error) {
	shown := redact(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupportedURL, err)
	}
	req.Header.Set("User-Agent", "compute-server")
	client := f.Client
	if client == nil {
		client = defaultClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		// *url.Error repeats the full URL, query included; name the
		// redacted one and keep the cause for errors.Is.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("fetching %s: %w", shown, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // lets the connection be reused
		resp.Body.Close()
		return nil, &StatusError{URL: shown, StatusCode: resp.StatusCode}
	}
	return resp, nil
}

// readLimited reads r to the end, failing with ErrTooLarge past limit
// bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("more than %d bytes: %w", limit, ErrTooLarge)
	}
	return data, nil
}

// redact returns u without user info, query and fragment, for messages.
func redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery, c.ForceQuery, c.Fragment, c.RawFragment = nil, "", false, "", ""
	return c.String()
}
