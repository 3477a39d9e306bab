package netguard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/computeserver/compute/internal/netguard"
)

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		addr    string
		policy  netguard.Policy
		wantErr string // substring; "" means allowed
	}{
		{name: "public v4", addr: "93.184.216.34"},
		{name: "public v6", addr: "2606:4700::1111"},
		{name: "loopback", addr: "127.0.0.1", wantErr: "destination 127.0.0.1 is a loopback address; set COMPUTE_ALLOW_PRIVATE_URLS=true"},
		{name: "loopback range", addr: "127.8.9.10", wantErr: "loopback"},
		{name: "loopback v6", addr: "::1", wantErr: "loopback"},
		{name: "v4-mapped loopback", addr: "::ffff:127.0.0.1", wantErr: "destination 127.0.0.1 is a loopback"},
		{name: "rfc1918 10", addr: "10.1.2.3", wantErr: "private"},
		{name: "rfc1918 172", addr: "172.20.0.1", wantErr: "private"},
		{name: "172.32 is public", addr: "172.32.0.1"},
		{name: "rfc1918 192.168", addr: "192.168.1.1", wantErr: "private"},
		{name: "unique local", addr: "fd12:3456::1", wantErr: "private"},
		{name: "link-local metadata", addr: "169.254.169.254", wantErr: "link-local"},
		{name: "link-local v6", addr: "fe80::1", wantErr: "link-local"},
		{name: "cgnat", addr: "100.64.0.1", wantErr: "carrier-grade NAT"},
		{name: "cgnat end", addr: "100.127.255.254", wantErr: "carrier-grade NAT"},
		{name: "100.128 is public", addr: "100.128.0.1"},
		{name: "unspecified", addr: "0.0.0.0", wantErr: "unspecified"},
		{name: "unspecified v6", addr: "::", wantErr: "unspecified"},
		{name: "this network", addr: "0.1.2.3", wantErr: "unspecified"},
		{name: "multicast", addr: "224.0.0.1", wantErr: "multicast"},
		{name: "multicast v6", addr: "ff02::1", wantErr: "multicast"},
		{name: "broadcast", addr: "255.255.255.255", wantErr: "broadcast"},
		{name: "reserved 240", addr: "240.0.0.1", wantErr: "reserved"},
		{name: "documentation", addr: "192.0.2.10", wantErr: "reserved"},
		{name: "benchmarking", addr: "198.18.0.1", wantErr: "reserved"},
		{name: "documentation v6", addr: "2001:db8::1", wantErr: "reserved"},
		{name: "nat64 of loopback", addr: "64:ff9b::7f00:1", wantErr: "loopback"},
		{name: "nat64 of public", addr: "64:ff9b::5db8:d822"},
		{name: "6to4 of private", addr: "2002:0a00:0001::1", wantErr: "private"},
		{name: "ipv4-compatible", addr: "::7f00:1", wantErr: "reserved"},

		{name: "allow private: loopback", addr: "127.0.0.1", policy: netguard.Policy{AllowPrivate: true}},
		{name: "allow private: metadata", addr: "169.254.169.254", policy: netguard.Policy{AllowPrivate: true}},
		{name: "allow private: cgnat", addr: "100.64.0.1", policy: netguard.Policy{AllowPrivate: true}},
		{name: "allow private: unspecified stays refused", addr: "0.0.0.0", policy: netguard.Policy{AllowPrivate: true}, wantErr: "unspecified"},
		{name: "allow private: multicast stays refused", addr: "224.0.0.1", policy: netguard.Policy{AllowPrivate: true}, wantErr: "multicast"},
		{
			name:   "allowed cidr",
			addr:   "10.1.2.3",
			policy: netguard.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		},
		{
			name:    "outside allowed cidr",
			addr:    "10.2.0.1",
			policy:  netguard.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
			wantErr: "private",
		},
		{
			name:   "allowed cidr matches mapped address",
			addr:   "::ffff:10.1.2.3",
			policy: netguard.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
		},
		{name: "default setting named", addr: "10.0.0.1", wantErr: "COMPUTE_ALLOW_PRIVATE_URLS=true"},
		{name: "own setting named", addr: "10.0.0.1", policy: netguard.Policy{Setting: "COMPUTE_WEBHOOK_ALLOW_PRIVATE"}, wantErr: "COMPUTE_WEBHOOK_ALLOW_PRIVATE=true"},
		{name: "default cidr setting named", addr: "10.0.0.1", wantErr: "add its range to COMPUTE_ALLOW_PRIVATE_CIDRS"},
		{name: "own cidr setting named", addr: "10.0.0.1", policy: netguard.Policy{CIDRSetting: "COMPUTE_WEBHOOK_ALLOW_CIDRS"}, wantErr: "add its range to COMPUTE_WEBHOOK_ALLOW_CIDRS"},
		{name: "always-refused class names the cidr setting", addr: "224.0.0.1", wantErr: "only a range in COMPUTE_ALLOW_PRIVATE_CIDRS"},
		{
			name:   "allowed cidr beats always-refused class",
			addr:   "0.0.0.0",
			policy: netguard.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/32")}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.CheckAddr(netip.MustParseAddr(tt.addr))
			checkErr(t, err, tt.wantErr, netguard.ErrForbiddenDestination)
		})
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	var p netguard.Policy
	if err := p.Control("tcp4", "8.8.8.8:443", nil); err != nil {
		t.Errorf("public address refused: %v", err)
	}
	if err := p.Control("tcp6", "[::1]:80", nil); !errors.Is(err, netguard.ErrForbiddenDestination) {
		t.Errorf("loopback: got %v, want ErrForbiddenDestination", err)
	}
	if err := p.Control("unix", "/run/x.sock", nil); !errors.Is(err, netguard.ErrForbiddenDestination) {
		t.Errorf("unix socket: got %v, want ErrForbiddenDestination", err)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		url     string
		wantErr string
		// policyErr is the error of the default Policy.CheckURL when it
		// differs from the package-level CheckURL's.
		policyErr string
	}{
		{name: "https", url: "https://example.com/a.png?x=1"},
		{name: "http with port", url: "http://example.com:8080/a.png"},
		{name: "upper-case scheme", url: "HTTPS://example.com/a.png"},
		{name: "ftp", url: "ftp://example.com/a.png", wantErr: `scheme "ftp" is not allowed`},
		{name: "file", url: "file:///etc/passwd", wantErr: "not allowed"},
		{name: "relative", url: "/a.png", wantErr: "not absolute"},
		{name: "no host", url: "http:///a.png", wantErr: "has no host"},
		{name: "garbage", url: "http://[::1", wantErr: "invalid URL"},
		{name: "loopback literal", url: "http://127.0.0.1:9000/x", policyErr: "loopback"},
		{name: "v6 literal", url: "http://[::1]/x", policyErr: "loopback"},
		{name: "localhost", url: "http://localhost:9000/x", policyErr: "loopback"},
		{name: "sub.localhost", url: "http://api.localhost./x", policyErr: "loopback"},
		{name: "metadata", url: "http://169.254.169.254/latest/meta-data/", policyErr: "link-local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkErr(t, netguard.CheckURL(tt.url), tt.wantErr, netguard.ErrInvalidURL)
			want, sentinel := tt.wantErr, netguard.ErrInvalidURL
			if tt.policyErr != "" {
				want, sentinel = tt.policyErr, netguard.ErrForbiddenDestination
			}
			checkErr(t, netguard.Policy{}.CheckURL(tt.url), want, sentinel)
			if tt.policyErr != "" {
				if err := (netguard.Policy{AllowPrivate: true}).CheckURL(tt.url); err != nil {
					t.Errorf("AllowPrivate: %v", err)
				}
			}
		})
	}
}

func checkErr(t *testing.T, err error, want string, sentinel error) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q does not contain %q", err, want)
	case want != "" && sentinel != nil && !errors.Is(err, sentinel):
		t.Errorf("error %q does not wrap %v", err, sentinel)
	}
}

func TestHTTPClientRefusesLoopback(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "secret")
	}))
	t.Cleanup(srv.Close)

	_, err := netguard.NewHTTPClient(netguard.Policy{}, 5*time.Second).Get(srv.URL)
	if !errors.Is(err, netguard.ErrForbiddenDestination) {
		t.Fatalf("got %v, want ErrForbiddenDestination", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
		t.Errorf("error does not name the address: %v", err)
	}

	resp, err := netguard.NewHTTPClient(netguard.Policy{AllowPrivate: true}, 5*time.Second).Get(srv.URL)
	if err != nil {
		t.Fatalf("AllowPrivate: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); string(b) != "secret" {
		t.Errorf("body %q", b)
	}
}

// TestHTTPClientChecksResolvedAddress resolves a name (not an IP literal)
// to loopback: the check happens on the address actually dialled, so a
// name that passes early validation is still refused at connect time.
func TestHTTPClientChecksResolvedAddress(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	u := "http://localhost:" + port + "/"
	if err := netguard.CheckURL(u); err != nil {
		t.Fatalf("CheckURL: %v", err)
	}
	_, err := netguard.NewHTTPClient(netguard.Policy{}, 5*time.Second).Get(u)
	if !errors.Is(err, netguard.ErrForbiddenDestination) {
		t.Fatalf("got %v, want ErrForbiddenDestination", err)
	}
}

func TestHTTPClientRedirects(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.HandleFunc("/hop/{n}", func(w http.ResponseWriter, r *http.Request) {
		var n int
		fmt.Sscan(r.PathValue("n"), &n)
		if n == 0 {
			io.WriteString(w, "done")
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
	})
	mux.HandleFunc("/to-file", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "file:///etc/passwd", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	client := netguard.NewHTTPClient(netguard.Policy{AllowPrivate: true}, 5*time.Second)

	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "five redirects", path: "/hop/5"},
		{name: "six redirects", path: "/hop/6", wantErr: "stopped after 5 redirects"},
		{name: "redirect to file", path: "/to-file", wantErr: `scheme "file" is not allowed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := client.Get(srv.URL + tt.path)
			if err == nil {
				resp.Body.Close()
			}
			checkErr(t, err, tt.wantErr, nil)
		})
	}
}

// TestRedirectToForbiddenAddress: an allowed first hop that redirects to a
// refused address does not reach it.
func TestRedirectToForbiddenAddress(t *testing.T) {
	t.Parallel()
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "internal")
	}))
	t.Cleanup(target.Close)
	// The first hop is allowed through an explicit CIDR for its own
	// address only; the redirect goes to ::1, which is not allowed.
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, port, _ := net.SplitHostPort(target.Listener.Addr().String())
		http.Redirect(w, r, "http://[::1]:"+port+"/", http.StatusFound)
	}))
	t.Cleanup(first.Close)
	p := netguard.Policy{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, first.URL, nil)
	_, err := netguard.NewHTTPClient(p, 0).Do(req)
	if !errors.Is(err, netguard.ErrForbiddenDestination) {
		t.Fatalf("got %v, want ErrForbiddenDestination", err)
	}
}

func ExamplePolicy_CheckAddr() {
	var p netguard.Policy // the default: public addresses only
	fmt.Println(p.CheckAddr(netip.MustParseAddr("93.184.216.34")))
	fmt.Println(p.CheckAddr(netip.MustParseAddr("127.0.0.1")))
	// Output:
	// <nil>
	// forbidden destination: destination 127.0.0.1 is a loopback address; set COMPUTE_ALLOW_PRIVATE_URLS=true, or add its range to COMPUTE_ALLOW_PRIVATE_CIDRS, to allow it
}

// TestCheckEndpointURL checks the rule for URLs the server sends to: a
// CheckURL-valid URL without credentials.
func TestCheckEndpointURL(t *testing.T) {
	t.Parallel()
	if err := netguard.CheckEndpointURL("https://hooks.example/x?k=1"); err != nil {
		t.Errorf("a plain https URL: %v", err)
	}
	if err := netguard.CheckEndpointURL("https://user:secret@hooks.example/x"); !errors.Is(err, netguard.ErrURLCredentials) || !errors.Is(err, netguard.ErrInvalidURL) {
		t.Errorf("a URL with credentials: %v, want ErrURLCredentials (an ErrInvalidURL)", err)
	}
	if err := netguard.CheckEndpointURL("ftp://hooks.example/x"); !errors.Is(err, netguard.ErrInvalidURL) || errors.Is(err, netguard.ErrURLCredentials) {
		t.Errorf("an ftp URL: %v, want ErrInvalidURL only", err)
	}
}
