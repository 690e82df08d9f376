package dispatch

import (
	"time"

	"github.com/llmquota/llmquota/internal/aimd"
	"github.com/llmquota/llmquota/internal/provider"
)

// newLearner returns the internal/aimd learner of a provider's real
// limits when cfg.LearnLimits is set (the LLMProvider's
// spec.limits.adaptive), measuring in its shortest request window (a
// minute without windows); nil when it learns nothing.
func newLearner(cfg Config, now time.Time) *aimd.Learner {
	if !cfg.LearnLimits {
		return nil
	}
	period := time.Duration(0)
	for _, w := range cfg.Limits.Windows {
		if period == 0 || w.Period < period {
			period = w.Period
		}
	}
	if period == 0 {
		period = time.Minute
	}
	return aimd.New(aimd.Config{Period: period}, now)
}

// learn teaches the learner from a call's failure, answered at now for a
// call sent at sent: a 429 the limits let through means the provider takes
// less than they say.
func (d *Dispatcher) learn(now, sent time.Time, pe *provider.Error) {
	if pe == nil || pe.Class != provider.ClassRateLimited {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.learner == nil {
		return
	}
	sentBefore, allowed := d.limiter.SentIn(sent.Add(-d.learner.Period()), sent)
	if d.learner.RateLimited(now, sent, sentBefore, allowed) {
		d.limiter.SetScale(d.learner.Scale())
		d.log.Info("Provider refused a call its declared limits allowed; using less of them",
			"scale", d.learner.Scale(), "sentInWindow", sentBefore, "allowed", allowed)
	}
}

// relearn gives back part of the declared limits for each clean period
// (called under d.mu).
func (d *Dispatcher) relearn(now time.Time) {
	if d.learner != nil && d.learner.Tick(now) {
		d.limiter.SetScale(d.learner.Scale())
	}
}
