package dispatch

import (
	"cmp"
	"strings"
	"time"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// NamespaceLimitWindow prefixes the Window of a Decision held by a
// namespace's own limits: "namespace-limit/minute", "namespace-limit/tokens".
const NamespaceLimitWindow = "namespace-limit/"

// limitsOf returns a namespace's limits, nil when it has none.
func (s Shares) limitsOf(namespace string) *ratewindow.Config {
	if l, ok := s.Limits[namespace]; ok {
		return l
	}
	return s.DefaultLimits
}

// nsLimiter returns the limiter of a namespace's own limits, made on first
// use and reconfigured, keeping what it counted, when they change; nil
// when the namespace has none (called under d.mu).
func (d *Dispatcher) nsLimiter(namespace string) *ratewindow.Limiter {
	cfg := d.cfg.Shares.limitsOf(namespace)
	if cfg == nil {
		return nil
	}
	t := d.tenant(namespace)
	if t.limits != cfg {
		var err error
		if t.limiter == nil {
			t.limiter, err = ratewindow.New(*cfg)
		} else {
			err = t.limiter.Reconfigure(*cfg)
		}
		if err != nil { // the controller builds valid limits; a bad one limits nothing rather than everything
			d.log.Error(err, "Namespace limits unusable", "namespace", namespace)
			t.limiter = nil
			return nil
		}
		t.limits = cfg
	}
	return t.limiter
}

// nsCheck is what the namespace's own limits say of a call of tokens at
// now (Allowed when it has none); its Window is prefixed with
// NamespaceLimitWindow (called under d.mu).
func (d *Dispatcher) nsCheck(now time.Time, namespace string, tokens int64) ratewindow.Decision {
	l := d.nsLimiter(namespace)
	if l == nil {
		return ratewindow.Decision{Allowed: true}
	}
	dec := l.Check(now, tokens)
	if !dec.Allowed {
		dec.Window = NamespaceLimitWindow + cmp.Or(dec.Window, strings.ToLower(dec.Reason.String()))
	}
	return dec
}

// nsAdmit counts a call the provider admitted in its namespace's limits,
// which nsCheck found room in (called under d.mu).
func (d *Dispatcher) nsAdmit(now time.Time, namespace string, tokens int64) {
	if l := d.nsLimiter(namespace); l != nil {
		l.Admit(now, tokens)
	}
}

// nsRelease ends a call in its namespace's limits: its concurrency slot
// comes back and its tokens are corrected by extra (called under d.mu).
func (d *Dispatcher) nsRelease(now time.Time, namespace string, extra int64) {
	t := d.tenants[namespace]
	if t == nil || t.limiter == nil {
		return
	}
	t.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral, ExtraTokens: extra})
	t.limitHeld = ratewindow.Decision{}
}

// holdLimited keeps a namespace's batch calls back while its own limits
// are full (next skips them): until dec.RetryAt, or for its concurrency
// until one of its calls ends. Its batches are told (called under d.mu).
func (d *Dispatcher) holdLimited(namespace string, dec ratewindow.Decision) {
	t := d.tenant(namespace)
	if t.limitHeld == dec {
		return
	}
	t.limitHeld = dec
	for _, b := range d.batches {
		if b.Namespace == namespace && b.OnChange != nil && b.more() {
			d.tell = append(d.tell, b.OnChange)
		}
	}
}

// limitHold is the namespace's own limits' hold at now, Allowed when none
// holds; at is when it ends (zero: when one of its calls ends).
func (t *tenant) limitHold(now time.Time) (dec ratewindow.Decision, held bool) {
	dec = t.limitHeld
	if dec.Reason == ratewindow.ReasonNone || (!dec.RetryAt.IsZero() && !now.Before(dec.RetryAt)) {
		return ratewindow.Decision{Allowed: true}, false
	}
	return dec, true
}

// tokenCost is a call's token cost at admission: its input at about four
// characters a token plus its output cap.
func tokenCost(inputChars int, output int64) int64 { return int64(inputChars)/4 + output }

// extraTokens is what an answered call used beyond the cost charged at
// admission (negative when less); 0 for a failed call, whose charge stays.
func extraTokens(resp *provider.Response, pe *provider.Error, charged int64) int64 {
	if pe != nil || resp == nil {
		return 0
	}
	return resp.InputTokens + resp.OutputTokens - charged
}
