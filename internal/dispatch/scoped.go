package dispatch

import (
	"cmp"
	"strings"
	"time"

	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// The prefixes of the Window of a Decision held by a scope's own limits:
// "namespace-limit/minute", "model-limit/tokens".
const (
	NamespaceLimitWindow = "namespace-limit/"
	ModelLimitWindow     = "model-limit/"
)

// scoped is the own limits of one scope, a namespace or a model, under the
// provider's: a call needs room in the provider's limits and in each of
// its scopes'. Each scope counts its own windows.
type scoped struct {
	limiter *ratewindow.Limiter
	limits  *ratewindow.Config // what limiter was made from
	// held is what the limits refused last, until one of the scope's calls
	// ends or its RetryAt passes: the scope's batches wait meanwhile.
	held ratewindow.Decision
}

// use returns the scope's limiter for cfg, made on first use and
// reconfigured, keeping what it counted, when cfg changes; nil when cfg is
// nil or unusable (the controller builds valid limits; a bad one limits
// nothing rather than everything).
func (s *scoped) use(cfg *ratewindow.Config) *ratewindow.Limiter {
	if cfg == nil {
		return nil
	}
	if s.limits != cfg {
		var err error
		if s.limiter == nil {
			s.limiter, err = ratewindow.New(*cfg)
		} else {
			err = s.limiter.Reconfigure(*cfg)
		}
		if err != nil {
			s.limiter, s.limits = nil, nil
			return nil
		}
		s.limits = cfg
	}
	return s.limiter
}

// check is what the scope's limits cfg say of a call of tokens at now,
// Allowed without limits; a refusal's Window is prefixed with prefix.
func (s *scoped) check(now time.Time, cfg *ratewindow.Config, tokens ratewindow.Cost, prefix string) ratewindow.Decision {
	l := s.use(cfg)
	if l == nil {
		return ratewindow.Decision{Allowed: true}
	}
	dec := l.Check(now, tokens)
	if !dec.Allowed {
		dec.Window = prefix + cmp.Or(dec.Window, strings.ToLower(dec.Reason.String()))
	}
	return dec
}

// admit counts a call that check found room for and the provider admitted.
func (s *scoped) admit(now time.Time, tokens ratewindow.Cost) {
	if s.limiter != nil {
		s.limiter.Admit(now, tokens)
	}
}

// release ends a call: its concurrency slot comes back, its tokens are
// corrected by extra, and a hold ends.
func (s *scoped) release(now time.Time, extra ratewindow.Cost) {
	if s.limiter != nil {
		s.limiter.Release(now, ratewindow.Result{Outcome: ratewindow.OutcomeNeutral, Extra: extra})
	}
	s.held = ratewindow.Decision{}
}

// hold is the scope's hold at now, if one holds; its RetryAt is when it
// ends (zero: when one of the scope's calls ends).
func (s *scoped) hold(now time.Time) (ratewindow.Decision, bool) {
	dec := s.held
	if dec.Reason == ratewindow.ReasonNone || (!dec.RetryAt.IsZero() && !now.Before(dec.RetryAt)) {
		return ratewindow.Decision{Allowed: true}, false
	}
	return dec, true
}

// limitsOf returns a namespace's limits, nil when it has none.
func (s Shares) limitsOf(namespace string) *ratewindow.Config {
	if l, ok := s.Limits[namespace]; ok {
		return l
	}
	return s.DefaultLimits
}

// modelOf is the model a batch's calls go to.
func (d *Dispatcher) modelOf(b *batch) string { return cmp.Or(b.Params.Model, d.cfg.DefaultModel) }

// model returns a model's scope, made on first use; nil when the model
// has no limits of its own (called under d.mu).
func (d *Dispatcher) model(name string) *scoped {
	if d.cfg.ModelLimits[name] == nil {
		return nil
	}
	s := d.models[name]
	if s == nil {
		s = &scoped{}
		d.models[name] = s
	}
	return s
}

// scopeCheck checks a call of tokens from namespace to model against both
// scopes' own limits. held is the scope that refused it, nil when both
// have room (called under d.mu).
func (d *Dispatcher) scopeCheck(now time.Time, namespace, model string, tokens ratewindow.Cost) (ratewindow.Decision, *scoped) {
	if cfg := d.cfg.Shares.limitsOf(namespace); cfg != nil {
		t := d.tenant(namespace)
		if dec := t.scope.check(now, cfg, tokens, NamespaceLimitWindow); !dec.Allowed {
			return dec, &t.scope
		}
	}
	if m := d.model(model); m != nil {
		if dec := m.check(now, d.cfg.ModelLimits[model], tokens, ModelLimitWindow); !dec.Allowed {
			return dec, m
		}
	}
	return ratewindow.Decision{Allowed: true}, nil
}

// scopeAdmit counts a call the provider admitted in its scopes, which
// scopeCheck found room in (called under d.mu).
func (d *Dispatcher) scopeAdmit(now time.Time, namespace, model string, tokens ratewindow.Cost) {
	if t := d.tenants[namespace]; t != nil {
		t.scope.admit(now, tokens)
	}
	if m := d.model(model); m != nil {
		m.admit(now, tokens)
	}
}

// scopeRelease ends a call in its scopes (called under d.mu).
func (d *Dispatcher) scopeRelease(now time.Time, namespace, model string, extra ratewindow.Cost) {
	if t := d.tenants[namespace]; t != nil {
		t.scope.release(now, extra)
	}
	if m := d.models[model]; m != nil {
		m.release(now, extra)
	}
}

// holdScope keeps the batches of a full scope back (next skips them) until
// dec.RetryAt, or for its concurrency until one of its calls ends, and
// tells them (called under d.mu).
func (d *Dispatcher) holdScope(s *scoped, dec ratewindow.Decision) {
	if s.held == dec {
		return
	}
	s.held = dec
	d.tellBatches(func(b *batch) bool {
		t := d.tenants[b.Namespace]
		return (t != nil && &t.scope == s) || d.models[d.modelOf(b)] == s
	})
}

// scopeHold is what holds a batch's calls back at now among its scopes'
// own limits, if anything does (called under d.mu).
func (d *Dispatcher) scopeHold(b *batch, now time.Time) (ratewindow.Decision, bool) {
	if t := d.tenants[b.Namespace]; t != nil {
		if dec, held := t.scope.hold(now); held {
			return dec, true
		}
	}
	if len(d.models) > 0 {
		if m := d.models[d.modelOf(b)]; m != nil {
			return m.hold(now)
		}
	}
	return ratewindow.Decision{Allowed: true}, false
}

// tokenCost is a call's token cost at admission: its input at about four
// characters a token, and its output cap.
func tokenCost(inputChars int, output int64) ratewindow.Cost {
	return ratewindow.Cost{Input: int64(inputChars) / 4, Output: output}
}

// extraTokens is what an answered call used beyond the cost charged at
// admission, input and output apart (negative when less); none for a
// failed call, whose charge stays.
func extraTokens(resp *provider.Response, pe *provider.Error, charged ratewindow.Cost) ratewindow.Cost {
	if pe != nil || resp == nil {
		return ratewindow.Cost{}
	}
	return ratewindow.Cost{Input: resp.InputTokens - charged.Input, Output: resp.OutputTokens - charged.Output}
}
