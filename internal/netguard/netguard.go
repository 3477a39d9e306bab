// Package netguard is the outbound connection policy of the compute server:
// it keeps task inputs fetched by URL and webhook deliveries from reaching
// loopback, private, link-local and other non-public addresses.
//
// The check runs on the resolved address of every connection the dialer
// makes (net.Dialer.Control), so a host name that resolves to a public
// address at validation time and to 127.0.0.1 at connect time (DNS
// rebinding) is still refused. CheckURL only validates the shape of a URL
// early, for a clear 4xx at create time.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenDestination means the policy refuses the address a
// connection would go to. Errors returned by the dialer, CheckAddr and
// Policy.CheckURL wrap it, so errors.Is works through *url.Error and
// *net.OpError.
var ErrForbiddenDestination = errors.New("forbidden destination")

// AllowPrivateEnv is the environment variable that the configuration maps
// to Policy.AllowPrivate; error messages name it so an operator knows what
// to change.
const AllowPrivateEnv = "COMPUTE_ALLOW_PRIVATE_URLS"

// AllowCIDRsEnv is the environment variable that the configuration maps to
// Policy.AllowCIDRs for task inputs; error messages name it beside
// AllowPrivateEnv.
const AllowCIDRsEnv = "COMPUTE_ALLOW_PRIVATE_CIDRS"

// Policy decides which destination addresses outbound connections may
// reach. The zero value allows public unicast addresses only.
type Policy struct {
	// AllowPrivate allows loopback, private (RFC 1918, fc00::/7),
	// link-local, shared (carrier-grade NAT) and reserved addresses: for
	// development and for deployments whose inputs live on an internal
	// network. Unspecified, multicast and broadcast addresses, which are
	// never a valid HTTP destination, stay refused unless listed in
	// AllowCIDRs.
	AllowPrivate bool
	// AllowCIDRs are ranges allowed whatever their class, e.g. an internal
	// object store's subnet while everything else private stays refused.
	AllowCIDRs []netip.Prefix
	// Setting names the configuration that sets AllowPrivate, for
	// refusal messages (default AllowPrivateEnv): webhooks have their own.
	Setting string
	// CIDRSetting names the configuration that sets AllowCIDRs, for
	// refusal messages (default AllowCIDRsEnv).
	CIDRSetting string
}

// class is why an address is not a plain public destination.
type class struct {
	// name completes "destination X is ... address".
	name string
	// always is true for classes AllowPrivate does not allow.
	always bool
}

var (
	classUnspecified = &class{"an unspecified", true}
	classMulticast   = &class{"a multicast", true}
	classBroadcast   = &class{"a broadcast", true}
	classLoopback    = &class{"a loopback", false}
	classPrivate     = &class{"a private", false}
	classLinkLocal   = &class{"a link-local", false}
	classShared      = &class{"a shared (carrier-grade NAT)", false}
	classReserved    = &class{"a reserved", false}
)

type rangeClass struct {
	p netip.Prefix
	c *class
}

// ranges lists every non-public range; the first match names the class,
// so more specific prefixes come first.
var ranges = func() []rangeClass {
	list := []struct {
		cidr string
		c    *class
	}{
		// IPv4.
		{"255.255.255.255/32", classBroadcast},
		{"0.0.0.0/8", classUnspecified}, // "this network"; 0.0.0.0 reaches the local host
		{"127.0.0.0/8", classLoopback},
		{"10.0.0.0/8", classPrivate},
		{"172.16.0.0/12", classPrivate},
		{"192.168.0.0/16", classPrivate},
		{"169.254.0.0/16", classLinkLocal}, // includes the cloud metadata address
		{"100.64.0.0/10", classShared},     // RFC 6598
		{"192.0.0.0/24", classReserved},    // IETF protocol assignments
		{"192.0.2.0/24", classReserved},    // TEST-NET-1
		{"192.88.99.0/24", classReserved},  // 6to4 relay anycast
		{"198.18.0.0/15", classReserved},   // benchmarking
		{"198.51.100.0/24", classReserved}, // TEST-NET-2
		{"203.0.113.0/24", classReserved},  // TEST-NET-3
		{"224.0.0.0/4", classMulticast},
		{"240.0.0.0/4", classReserved}, // future use
		// IPv6.
		{"::/128", classUnspecified},
		{"::1/128", classLoopback},
		{"::/96", classReserved},          // IPv4-compatible (deprecated)
		{"64:ff9b:1::/48", classReserved}, // local-use NAT64
		{"100::/64", classReserved},       // discard-only
		{"2001:db8::/32", classReserved},  // documentation
		{"2001::/23", classReserved},      // IETF protocol assignments (Teredo, ORCHID, ...)
		{"fc00::/7", classPrivate},        // unique local
		{"fec0::/10", classPrivate},       // site-local (deprecated)
		{"fe80::/10", classLinkLocal},
		{"ff00::/8", classMulticast},
	}
	out := make([]rangeClass, len(list))
	for i, r := range list {
		out[i] = rangeClass{netip.MustParsePrefix(r.cidr), r.c}
	}
	return out
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// classify returns why addr is not a public unicast address, or nil.
func classify(addr netip.Addr) *class {
	addr = addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	// Addresses that embed an IPv4 address reach that address through a
	// translator: judge the embedded one.
	switch {
	case addr.Is6() && nat64.Contains(addr):
		b := addr.As16()
		return classify(netip.AddrFrom4([4]byte(b[12:16])))
	case addr.Is6() && sixToFour.Contains(addr):
		b := addr.As16()
		return classify(netip.AddrFrom4([4]byte(b[2:6])))
	}
	for _, r := range ranges {
		if r.p.Contains(addr) {
			return r.c
		}
	}
	// Anything the standard predicates know about that the list missed.
	switch {
	case addr.IsLoopback():
		return classLoopback
	case addr.IsPrivate():
		return classPrivate
	case addr.IsLinkLocalUnicast():
		return classLinkLocal
	case addr.IsMulticast():
		return classMulticast
	case addr.IsUnspecified():
		return classUnspecified
	}
	return nil
}

// CheckAddr reports whether the policy allows connecting to addr. The
// error wraps ErrForbiddenDestination and says how to allow the address.
func (p Policy) CheckAddr(addr netip.Addr) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrForbiddenDestination)
	}
	addr = addr.WithZone("").Unmap()
	for _, pfx := range p.AllowCIDRs {
		if pfx.Contains(addr) {
			return nil
		}
	}
	c := classify(addr)
	if c == nil || (p.AllowPrivate && !c.always) {
		return nil
	}
	cidrSetting := p.CIDRSetting
	if cidrSetting == "" {
		cidrSetting = AllowCIDRsEnv
	}
	if c.always {
		return fmt.Errorf("%w: destination %s is %s address; only a range in %s can make it reachable",
			ErrForbiddenDestination, addr, c.name, cidrSetting)
	}
	setting := p.Setting
	if setting == "" {
		setting = AllowPrivateEnv
	}
	return fmt.Errorf("%w: destination %s is %s address; set %s=true, or add its range to %s, to allow it",
		ErrForbiddenDestination, addr, c.name, setting, cidrSetting)
}

// Control is a net.Dialer.Control hook: it refuses a connection whose
// resolved address the policy does not allow. It runs after name
// resolution, once per address tried.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check %s address %q: %v", ErrForbiddenDestination, network, address, err)
	}
	return p.CheckAddr(ap.Addr())
}

// Dialer returns a dialer that enforces the policy on every connection.
func (p Policy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: p.Control}
}
