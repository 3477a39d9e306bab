package netguard

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// ErrInvalidURL means a URL is not an absolute http or https URL with a
// host.
var ErrInvalidURL = errors.New("invalid URL")

// MaxRedirects is how many redirects a client from NewHTTPClient follows.
const MaxRedirects = 5

// CheckURL validates the shape of an outbound URL early: an absolute http
// or https URL with a host. It does not resolve the host; the dialer of
// NewHTTPClient checks the address at connect time. Errors wrap
// ErrInvalidURL.
func CheckURL(raw string) error {
	_, err := parseURL(raw)
	return err
}

// ErrURLCredentials is CheckEndpointURL's refusal of a URL with user
// information; it wraps ErrInvalidURL.
var ErrURLCredentials = fmt.Errorf("%w: must not contain credentials", ErrInvalidURL)

// CheckEndpointURL is CheckURL for a URL the server sends to (a webhook
// target): it also refuses credentials in the URL, which would be stored
// and logged with it. Errors wrap ErrInvalidURL.
func CheckEndpointURL(raw string) error {
	u, err := parseURL(raw)
	if err != nil {
		return err
	}
	if u.User != nil {
		return ErrURLCredentials
	}
	return nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "":
		return nil, fmt.Errorf("%w: %q is not absolute (want http:// or https://)", ErrInvalidURL, raw)
	default:
		return nil, fmt.Errorf("%w: scheme %q is not allowed (want http or https)", ErrInvalidURL, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w: %q has no host", ErrInvalidURL, raw)
	}
	return u, nil
}

// CheckURL is CheckURL plus the checks that need no DNS: a host that is an
// IP literal, or "localhost", must be allowed by the policy. Errors wrap
// ErrInvalidURL or ErrForbiddenDestination.
func (p Policy) CheckURL(raw string) error {
	u, err := parseURL(raw)
	if err != nil {
		return err
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return p.CheckAddr(netip.AddrFrom4([4]byte{127, 0, 0, 1}))
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		return p.CheckAddr(addr)
	}
	return nil
}

// NewHTTPClient returns a client whose every connection, including those
// of redirects, goes through the policy's dialer. It follows at most
// MaxRedirects redirects, only to http and https URLs. Environment proxies
// are not used: a proxy would make the connection on the client's behalf
// and bypass the address check. timeout bounds a whole request (0: none).
func NewHTTPClient(p Policy, timeout time.Duration) *http.Client {
	dialer := p.Dialer(30 * time.Second)
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", MaxRedirects)
			}
			return p.CheckURL(req.URL.String())
		},
	}
}
