package authority

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Ledger keeps the grants a gateway's calls hold, from the grant to the
// release, so that a new leader can be told the calls in flight (CheckIns).
// It stands between the gateway and its quota: Acquire and Release pass
// through it.
type Ledger struct {
	// Quota hands out the grants (Spares, or Client).
	Quota Acquirer
	// Releases sends the releases and write reports (Releaser).
	Releases interface {
		Release(ReleaseRequest)
		Wrote(grant string)
	}

	mu   sync.Mutex
	open map[string]OpenGrant
}

// Acquire asks Quota and records a grant it gives.
func (l *Ledger) Acquire(ctx context.Context, req AcquireRequest) (AcquireResponse, error) {
	resp, err := l.Quota.Acquire(ctx, req)
	if err == nil && resp.Grant != "" {
		l.mu.Lock()
		if l.open == nil {
			l.open = map[string]OpenGrant{}
		}
		l.open[resp.Grant] = OpenGrant{Grant: resp.Grant, Provider: req.Provider, Namespace: req.Namespace,
			Model: req.Model, Endpoint: resp.Endpoint}
		l.mu.Unlock()
	}
	return resp, err
}

// Release forgets the grant, whose call ended, and sends its release.
func (l *Ledger) Release(req ReleaseRequest) {
	l.mu.Lock()
	delete(l.open, req.Grant)
	l.mu.Unlock()
	l.Releases.Release(req)
}

// Wrote sends a grant's write report.
func (l *Ledger) Wrote(grant string) { l.Releases.Wrote(grant) }

// Open returns the grants of the calls in flight.
func (l *Ledger) Open() []OpenGrant {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]OpenGrant, 0, len(l.open))
	for _, g := range l.open {
		out = append(out, g)
	}
	return out
}

// DefaultCheckEvery is how often a gateway asks which leader serves, to
// check in with a new one: a new leader admits nothing until every gateway
// pod did, so this is the most an election's end waits for a gateway.
const DefaultCheckEvery = time.Second

// CheckIns tells each new leader the gateway's calls in flight: every
// Every it pings the authority, and when the answer names a term it has
// not checked in with (a new leader), it sends Ledger's open grants.
type CheckIns struct {
	Client *Client
	Ledger *Ledger
	// Pod is the gateway's pod, "namespace/name".
	Pod string
	// Every is how often to ask; DefaultCheckEvery when zero.
	Every time.Duration
	Clock clock.Clock
	Log   logr.Logger

	// done is the term checked in with.
	done string
}

// Run checks in until ctx ends.
func (c *CheckIns) Run(ctx context.Context) {
	clk := c.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	every := c.Every
	if every <= 0 {
		every = DefaultCheckEvery
	}
	for {
		if err := c.Once(ctx); err != nil && ctx.Err() == nil {
			c.Log.V(1).Info("Checking in with the quota authority", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			return
		case <-clk.After(every):
		}
	}
}

// Once checks in if the leader that answers has not been told the calls in
// flight.
func (c *CheckIns) Once(ctx context.Context) error {
	if err := c.Client.Ping(ctx); err != nil {
		return err
	}
	if c.Client.Epoch() == c.done {
		return nil
	}
	epoch, err := c.Client.CheckIn(ctx, CheckinRequest{Pod: c.Pod, Grants: c.Ledger.Open()})
	if err != nil {
		return err
	}
	c.done = epoch
	return nil
}

// NewHolder names a start of the gateway process of pod ("namespace/name"):
// Client.Holder. Each start has its own, so a restarted gateway's check-in
// ends the grants its previous process held.
func NewHolder(pod string) string { return pod + "/" + newID() }
