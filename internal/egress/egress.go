// Package egress decides which addresses the manager may reach on a
// tenant's behalf. A batch names its object storage endpoint, and the
// manager (which holds Secrets and runs inside the cluster) connects to
// it: without a check a tenant could make it call cluster-internal
// services or a cloud's metadata address. The policy is an admin's
// allow-list of hostnames and CIDRs; with no list, only public addresses
// are reached. It is checked on the name before a batch is admitted, and
// again on every connection (DialContext), so neither a redirect nor a
// name that resolves differently later reaches a refused address.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Resolver looks names up (net.DefaultResolver).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy is the allow-list. The zero Policy, and a nil one, allow public
// addresses only.
type Policy struct {
	// hosts are lower-case names, exact or "*.suffix" (any name under
	// suffix, not suffix itself).
	hosts []string
	nets  []netip.Prefix
	// Resolver resolves names; net.DefaultResolver when nil.
	Resolver Resolver
}

// MustParse is Parse for lists known to be good (tests, constants).
func MustParse(entries ...string) *Policy {
	p, err := Parse(entries)
	if err != nil {
		panic(err)
	}
	return p
}

// Parse reads an allow-list: hostnames ("minio.storage.svc",
// "*.amazonaws.com"), IP addresses and CIDRs ("10.20.0.0/16"). An empty
// list allows public addresses only.
func Parse(entries []string) (*Policy, error) {
	p := &Policy{}
	for _, e := range entries {
		e = strings.ToLower(strings.TrimSpace(e))
		switch {
		case e == "":
			continue
		case strings.Contains(e, "/"):
			prefix, err := netip.ParsePrefix(e)
			if err != nil {
				return nil, fmt.Errorf("allowed endpoint %q is not a CIDR: %w", e, err)
			}
			p.nets = append(p.nets, prefix.Masked())
		default:
			if addr, err := netip.ParseAddr(e); err == nil {
				p.nets = append(p.nets, netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()))
				continue
			}
			if strings.ContainsAny(e, ":@ ") || strings.Trim(strings.TrimPrefix(e, "*."), ".") == "" {
				return nil, fmt.Errorf("allowed endpoint %q is neither a hostname nor an IP address or CIDR (no scheme or port)", e)
			}
			p.hosts = append(p.hosts, strings.TrimSuffix(e, "."))
		}
	}
	return p, nil
}

// Listed reports whether the allow-list has any entry: then it is the
// whole truth, and public addresses not on it are refused too.
func (p *Policy) Listed() bool { return p != nil && len(p.hosts)+len(p.nets) > 0 }

// RefusedError says why an endpoint may not be reached.
type RefusedError struct {
	Host   string
	Addr   netip.Addr // the refused address, when the name resolved
	Reason string
}

func (e *RefusedError) Error() string {
	at := e.Host
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		at += " (" + e.Addr.String() + ")"
	}
	return fmt.Sprintf("endpoint %s is not allowed: %s", at, e.Reason)
}

// ErrRefused matches every RefusedError with errors.Is.
var ErrRefused = errors.New("endpoint not allowed")

// Is makes errors.Is(err, ErrRefused) true for a RefusedError.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Check decides whether host (a name or an IP address, no port) may be
// reached. It returns the addresses to dial: nil when the name itself is
// listed (the admin trusts its DNS), else every address the name resolves
// to, each of them allowed.
func (p *Policy) Check(ctx context.Context, host string) ([]netip.Addr, error) {
	if p == nil {
		p = &Policy{}
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if p.hostListed(name) {
		return nil, nil
	}
	if _, err := netip.ParseAddr(name); err != nil && !p.Listed() && internalName(name) {
		return nil, &RefusedError{Host: host, Reason: "a cluster-internal name; an admin must list it (--s3-allowed-endpoints)"}
	}
	addrs, err := p.resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if reason := p.refuses(a); reason != "" {
			return nil, &RefusedError{Host: host, Addr: a, Reason: reason}
		}
	}
	return addrs, nil
}

func (p *Policy) resolve(ctx context.Context, name string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(name); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%s resolves to no address", name)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

// refuses says why an address is refused, or "".
func (p *Policy) refuses(a netip.Addr) string {
	for _, n := range p.nets {
		if n.Contains(a) {
			return ""
		}
	}
	if p.Listed() {
		return "not in the allow-list (--s3-allowed-endpoints)"
	}
	if kind := internalAddr(a); kind != "" {
		return "a " + kind + " address; an admin must list it (--s3-allowed-endpoints)"
	}
	return ""
}

func (p *Policy) hostListed(name string) bool {
	for _, h := range p.hosts {
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			if strings.HasSuffix(name, "."+suffix) {
				return true
			}
		} else if name == h {
			return true
		}
	}
	return false
}

// internalName is a name only a cluster's or a host's resolver answers.
func internalName(name string) bool {
	return name == "localhost" || !strings.Contains(name, ".") ||
		strings.HasSuffix(name, ".svc") || strings.HasSuffix(name, ".cluster.local") || strings.HasSuffix(name, ".localhost")
}

// sharedSpace is RFC 6598's carrier-grade NAT range, which many clusters
// use for pods and Services.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// internalAddr names the kind of a non-public address, or "".
func internalAddr(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast():
		return "link-local (cloud metadata)"
	case a.IsPrivate() || sharedSpace.Contains(a):
		return "private (cluster-internal)"
	case a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast():
		return "non-unicast"
	}
	return ""
}

// DialContext wraps dial so that every connection is checked: the name
// dialed (each redirect's too) is checked, and a name that is not listed
// is dialed at the addresses that were checked, never resolved again.
func (p *Policy) DialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		addrs, err := p.Check(ctx, host)
		if err != nil {
			return nil, err
		}
		if addrs == nil {
			return dial(ctx, network, addr)
		}
		var last error
		for _, a := range addrs {
			conn, err := dial(ctx, network, net.JoinHostPort(a.String(), port))
			if err == nil {
				return conn, nil
			}
			last = err
		}
		return nil, last
	}
}
