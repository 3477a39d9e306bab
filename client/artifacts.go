package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Download writes an artifact's content to w and returns its size. The
// artifact's URL may be relative (the API serves it) or absolute; the API
// key is sent only to the client's own server, never to another host (a
// CDN or a bucket that COMPUTE_ARTIFACTS_PUBLIC_URL names). When the
// artifact has a SHA256 and a Size, the content is checked against them.
func (c *Client) Download(ctx context.Context, a Artifact, w io.Writer) (int64, error) {
	u, err := c.base.Parse(a.URL)
	if err != nil || a.URL == "" {
		return 0, fmt.Errorf("client: artifact %s: bad URL %q", a.Key, a.URL)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return 0, fmt.Errorf("client: artifact %s: URL %q is not http or https", a.Key, u.Redacted())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return 0, err
	}
	if c.sameOrigin(u) {
		c.authorize(req)
	} else if c.ua != "" {
		req.Header.Set("User-Agent", c.ua)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var err error = readProblem(res)
		if res.StatusCode == http.StatusUnauthorized && !c.sameOrigin(u) {
			// The server names its artifacts by its public URL
			// (COMPUTE_PUBLIC_URL); a client that reaches it by another
			// name (127.0.0.1 for localhost) did not send it the key.
			err = fmt.Errorf("%w (the artifact's URL is on %s, not on this client's server %s, so the API key was not sent to it; use the server's public URL, COMPUTE_PUBLIC_URL, as the client's server URL)",
				err, u.Scheme+"://"+u.Host, c.base.Scheme+"://"+c.base.Host)
		}
		return 0, err
	}
	var sum hash.Hash
	dst := w
	if a.SHA256 != "" {
		sum = sha256.New()
		dst = io.MultiWriter(w, sum)
	}
	body := io.Reader(res.Body)
	if a.Size > 0 {
		// A server (or a CDN) sending more than the artifact's size is
		// cut off after one byte too many rather than filling the disk.
		body = io.LimitReader(res.Body, a.Size+1)
	}
	n, err := io.Copy(dst, body)
	if err != nil {
		return n, fmt.Errorf("client: downloading %s: %w", redacted(u), err)
	}
	if a.Size > 0 && n != a.Size {
		return n, fmt.Errorf("client: artifact %s: got %d bytes, want %d", a.Key, n, a.Size)
	}
	if sum != nil && !strings.EqualFold(hex.EncodeToString(sum.Sum(nil)), a.SHA256) {
		return n, fmt.Errorf("client: artifact %s: content does not match its sha256 %s", a.Key, a.SHA256)
	}
	return n, nil
}

// redacted is u without its query (a presigned URL's signature).
func redacted(u *url.URL) string {
	v := *u
	v.RawQuery = ""
	return v.Redacted()
}
