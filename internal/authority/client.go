package authority

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Resolver finds the authority's base URL (the leader's).
type Resolver interface {
	// URL returns the base URL to call.
	URL(ctx context.Context) (string, error)
	// Forget drops what URL found after a call to it failed: the leader
	// may have changed.
	Forget()
}

// StaticURL is a Resolver that always answers the same URL.
type StaticURL string

// URL returns the URL.
func (u StaticURL) URL(context.Context) (string, error) { return string(u), nil }

// Forget does nothing.
func (StaticURL) Forget() {}

// DefaultLeaseRecheck is how long a LeaseResolver trusts the leader it
// found before it reads the Lease again.
const DefaultLeaseRecheck = 5 * time.Second

// MinLeaseRead is the least time between two reads of the Lease. While no
// leader answers (an election after a crash), every call waiting for quota
// fails, forgets the leader and asks again: one read a MinLeaseRead serves
// them all, where a read per failed call would put the gateway's waiting
// calls on the API server.
const MinLeaseRead = 250 * time.Millisecond

// LeaseResolver finds the leader from the managers' leader-election Lease:
// its holder identity begins with the leader pod's name, and the pod's IP
// is where the leader listens.
//
// The leader found is read again from the Lease every Recheck, not only
// after a failed call: a call to a deleted pod's address may never fail
// in its caller's time (a readiness probe's second hangs on a dial to an
// address nobody answers), and a resolver that waited for a failure then
// kept the old leader for ever.
type LeaseResolver struct {
	Client client.Reader
	// Lease is the leader-election Lease.
	Lease types.NamespacedName
	// Port is the port the leader serves quota on.
	Port int
	// Recheck is how long the leader found is trusted; 0 means
	// DefaultLeaseRecheck.
	Recheck time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	url     string
	holder  string
	checked time.Time
	// read is when the Lease was last read, readErr what that read failed
	// with (nil: it found the leader).
	read    time.Time
	readErr error
}

// URL returns the current leader's base URL.
func (l *LeaseResolver) URL(ctx context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.url != "" && now.Sub(l.checked) < l.recheck() {
		return l.url, nil
	}
	if !l.read.IsZero() && now.Sub(l.read) < MinLeaseRead {
		if l.url != "" {
			return l.url, nil
		}
		return "", cmp.Or(l.readErr, fmt.Errorf("the leader found in the Lease %s did not answer; the Lease is read again within %v", l.Lease, MinLeaseRead))
	}
	l.read, l.readErr = now, nil
	var lease coordinationv1.Lease
	if err := l.Client.Get(ctx, l.Lease, &lease); err != nil {
		if ctx.Err() != nil {
			l.read = time.Time{} // this caller gave up: the next one reads
			return "", err
		}
		l.readErr = fmt.Errorf("reading the leader-election Lease %s: %w", l.Lease, err)
		return "", l.readErr
	}
	holder := ptr.Deref(lease.Spec.HolderIdentity, "")
	if l.url != "" && holder == l.holder {
		l.checked = now
		return l.url, nil
	}
	url, err := l.leaderURL(ctx, holder)
	if err != nil {
		l.url, l.readErr = "", err
		return "", err
	}
	l.url, l.holder, l.checked = url, holder, now
	return url, nil
}

// leaderURL finds the address of the pod that holds the Lease.
func (l *LeaseResolver) leaderURL(ctx context.Context, holder string) (string, error) {
	podName, _, _ := strings.Cut(holder, "_") // controller-runtime's identity: <hostname>_<uuid>
	if podName == "" {
		return "", fmt.Errorf("the Lease %s has no holder: no manager leads", l.Lease)
	}
	var pod corev1.Pod
	if err := l.Client.Get(ctx, types.NamespacedName{Namespace: l.Lease.Namespace, Name: podName}, &pod); err != nil {
		return "", fmt.Errorf("reading the leader pod %s: %w", podName, err)
	}
	if pod.Status.PodIP == "" {
		return "", fmt.Errorf("the leader pod %s has no IP yet", podName)
	}
	host := pod.Status.PodIP
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("http://%s:%d", host, l.Port), nil
}

func (l *LeaseResolver) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *LeaseResolver) recheck() time.Duration {
	if l.Recheck > 0 {
		return l.Recheck
	}
	return DefaultLeaseRecheck
}

// Forget drops the URL found.
func (l *LeaseResolver) Forget() {
	l.mu.Lock()
	l.url = ""
	l.mu.Unlock()
}

// Client calls the authority.
type Client struct {
	Resolver Resolver
	HTTP     *http.Client
	// Token returns the gateway's own bearer token; nil sends none.
	Token func() (string, error)
	// Holder names this gateway process, "namespace/pod/instance" with an
	// instance new at each start (HolderHeader); empty sends none.
	Holder string

	// epoch is the last leader's term an answer named (EpochHeader).
	epoch atomic.Pointer[string]
}

// Epoch is the term of the leader that answered last; "" before any did.
func (c *Client) Epoch() string {
	if e := c.epoch.Load(); e != nil {
		return *e
	}
	return ""
}

// CheckIn tells the leader the gateway's calls in flight, and returns the
// term of the leader that took them.
func (c *Client) CheckIn(ctx context.Context, req CheckinRequest) (string, error) {
	status, epoch, err := c.do(ctx, CheckinPath, req, nil)
	if err == nil && status != http.StatusNoContent {
		err = fmt.Errorf("the quota authority answered %d to a check-in", status)
	}
	return epoch, err
}

// Acquire asks for quota; a refusal is an AcquireResponse with Reason set,
// not an error. An error means the authority could not be asked.
func (c *Client) Acquire(ctx context.Context, req AcquireRequest) (AcquireResponse, error) {
	var out AcquireResponse
	status, err := c.post(ctx, AcquirePath, req, &out)
	if err != nil {
		return AcquireResponse{}, err
	}
	if status != http.StatusOK && status != http.StatusTooManyRequests {
		return AcquireResponse{}, fmt.Errorf("the quota authority answered %d", status)
	}
	return out, nil
}

// Lend asks for standby grants (req.Standby of them at most).
func (c *Client) Lend(ctx context.Context, req AcquireRequest) (StandbyResponse, error) {
	var out StandbyResponse
	status, epoch, err := c.do(ctx, StandbyPath, req, &out)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("the quota authority answered %d to a standby request", status)
	}
	out.Epoch = epoch
	return out, err
}

// Release ends grants, in one request. Repeating it is safe.
func (c *Client) Release(ctx context.Context, reqs ...ReleaseRequest) error {
	return c.postNoContent(ctx, ReleasePath, ReleaseBatch{Releases: reqs}, "a release")
}

// Wrote says a grant's request reached the provider's connection.
func (c *Client) Wrote(ctx context.Context, grant string) error {
	return c.postNoContent(ctx, WrotePath, WroteRequest{Grant: grant}, "a write report")
}

// Ping checks that the authority answers this gateway.
func (c *Client) Ping(ctx context.Context) error {
	return c.postNoContent(ctx, PingPath, struct{}{}, "a ping")
}

// postNoContent posts in and expects 204 No Content; what names the request in errors.
func (c *Client) postNoContent(ctx context.Context, path string, in any, what string) error {
	status, err := c.post(ctx, path, in, nil)
	if err == nil && status != http.StatusNoContent {
		err = fmt.Errorf("the quota authority answered %d to %s", status, what)
	}
	return err
}

func (c *Client) post(ctx context.Context, path string, in, out any) (int, error) {
	status, _, err := c.do(ctx, path, in, out)
	return status, err
}

// do posts in to path, decodes the answer into out (when not nil), and
// returns its status and the term of the leader that gave it.
func (c *Client) do(ctx context.Context, path string, in, out any) (status int, epoch string, err error) {
	base, err := c.Resolver.URL(ctx)
	if err != nil {
		return 0, "", err
	}
	body, err := json.Marshal(in)
	if err != nil {
		return 0, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Holder != "" {
		req.Header.Set(HolderHeader, c.Holder)
	}
	if c.Token != nil {
		token, err := c.Token()
		if err != nil {
			return 0, "", fmt.Errorf("reading the gateway's token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			c.Resolver.Forget()
		}
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if epoch = resp.Header.Get(EpochHeader); epoch != "" && epoch != c.Epoch() {
		e := epoch // stored only when the term changes: no allocation per call
		c.epoch.Store(&e)
	}
	if resp.StatusCode == http.StatusNotFound {
		var e errorBody
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&e)
		return resp.StatusCode, epoch, &NotServedError{Message: e.Error}
	}
	if out != nil && resp.StatusCode < 500 {
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(out); err != nil {
			return resp.StatusCode, epoch, fmt.Errorf("reading the quota authority's answer: %w", err)
		}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, epoch, nil
}

// NotServedError says the authority runs no dispatcher for the provider
// (it does not exist, or failed to start).
type NotServedError struct{ Message string }

func (e *NotServedError) Error() string { return e.Message }
