package egress

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// names is a resolver of fixed answers.
type names map[string][]string

func (n names) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range n[host] {
		out = append(out, netip.MustParseAddr(s))
	}
	if out == nil {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return out, nil
}

var dns = names{
	"s3.eu-west-1.amazonaws.com": {"52.95.150.1"},
	"amazonaws.com":              {"52.94.236.248"},
	"storage.googleapis.com":     {"142.250.0.1", "2a00:1450::1"},
	"minio.storage.svc":          {"10.96.4.2"},
	"rebound.example.com":        {"52.95.150.2", "169.254.169.254"},
	"mapped.example.com":         {"::ffff:127.0.0.1"},
	"cgnat.example.com":          {"100.64.3.4"},
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		allowed []string
		host    string
		// refused is "" when allowed, else a part of the refusal.
		refused string
	}{
		{"public by default", nil, "s3.eu-west-1.amazonaws.com", ""},
		{"every address public", nil, "storage.googleapis.com", ""},
		{"loopback literal", nil, "127.0.0.1", "loopback"},
		{"IPv4-mapped loopback", nil, "mapped.example.com", "loopback"},
		{"metadata address", nil, "169.254.169.254", "link-local"},
		{"IPv6 link-local", nil, "fe80::1", "link-local"},
		{"private range", nil, "10.1.2.3", "private"},
		{"carrier-grade NAT", nil, "cgnat.example.com", "private"},
		{"one internal address among public ones", nil, "rebound.example.com", "169.254.169.254"},
		{"cluster-internal name", nil, "minio.storage.svc", "cluster-internal name"},
		{"single-label name", nil, "minio", "cluster-internal name"},
		{"unspecified", nil, "0.0.0.0", "non-unicast"},
		{"listed name", []string{"minio.storage.svc"}, "minio.storage.svc", ""},
		{"listed name, any case and a trailing dot", []string{"MinIO.storage.svc."}, "minio.STORAGE.svc.", ""},
		{"wildcard", []string{"*.amazonaws.com"}, "s3.eu-west-1.amazonaws.com", ""},
		{"wildcard is not its suffix", []string{"*.amazonaws.com"}, "amazonaws.com", "allow-list"},
		{"listed CIDR", []string{"10.96.0.0/12"}, "10.96.4.2", ""},
		{"listed address", []string{"127.0.0.1"}, "127.0.0.1", ""},
		{"a list refuses what it does not name, public too", []string{"10.96.0.0/12"}, "s3.eu-west-1.amazonaws.com", "allow-list"},
		{"a list refuses unlisted internal addresses", []string{"minio.storage.svc"}, "169.254.169.254", "allow-list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(tc.allowed)
			if err != nil {
				t.Fatal(err)
			}
			p.Resolver = dns
			_, err = p.Check(context.Background(), tc.host)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), tc.host) {
				t.Fatalf("got %v, want a refusal naming %q and %s", err, tc.refused, tc.host)
			}
		})
	}
}

func TestParseRefusesWhatIsNotAnEntry(t *testing.T) {
	for _, bad := range []string{"http://minio:9000", "minio:9000", "10.0.0.0/33", "*.", "user@host"} {
		if _, err := Parse([]string{bad}); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("Parse(%q) = %v, want an error naming it", bad, err)
		}
	}
}

// TestRedirectToARefusedAddressIsNotFollowed: an allowed server answers
// with a redirect to the metadata address; the client's next connection
// is refused by the dialer, and the metadata address is never dialed.
func TestRedirectToARefusedAddressIsNotFollowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	}))
	defer srv.Close()
	p, err := Parse([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var dialed []string
	var d net.Dialer
	tr := &http.Transport{DialContext: p.DialContext(func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = append(dialed, addr)
		return d.DialContext(ctx, network, addr)
	})}
	defer tr.CloseIdleConnections()
	_, err = (&http.Client{Transport: tr}).Get(srv.URL)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "169.254.169.254") {
		t.Fatalf("following the redirect: %v, want a refusal of 169.254.169.254", err)
	}
	if len(dialed) != 1 || dialed[0] != strings.TrimPrefix(srv.URL, "http://") {
		t.Fatalf("dialed %v, want only the allowed server", dialed)
	}
}

// TestDialUsesTheCheckedAddresses: a name that is not listed is dialed at
// the addresses checked, so a second lookup cannot answer differently.
func TestDialUsesTheCheckedAddresses(t *testing.T) {
	p, err := Parse([]string{"52.95.150.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	p.Resolver = dns
	var dialed string
	dial := p.DialContext(func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed = addr
		return nil, errors.New("not really")
	})
	_, _ = dial(context.Background(), "tcp", "s3.eu-west-1.amazonaws.com:443")
	if dialed != "52.95.150.1:443" {
		t.Fatalf("dialed %q, want the checked address", dialed)
	}
}

func FuzzCheck(f *testing.F) {
	f.Add("10.0.0.0/8,*.example.com", "a.example.com")
	f.Add("", "::ffff:169.254.169.254")
	f.Fuzz(func(t *testing.T, list, host string) {
		p, err := Parse(strings.Split(list, ","))
		if err != nil {
			return
		}
		p.Resolver = names{}
		addrs, err := p.Check(context.Background(), host)
		if err != nil {
			return
		}
		for _, a := range addrs {
			if !p.Listed() && internalAddr(a) != "" {
				t.Fatalf("%s allowed at internal address %s with no list", host, a)
			}
		}
	})
}
