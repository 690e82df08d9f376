package dispatch

import (
	"time"

	"github.com/llmquota/llmquota/internal/aimd"
	"github.com/llmquota/llmquota/internal/provider"
)

// learning is what the dispatcher learns of a provider's real limits when
// its Config.LearnLimits is set (the LLMProvider's spec.limits.learn):
// the internal/aimd learner and the period it measures in.
type learning struct {
	learner *aimd.Learner
	period  time.Duration // the shortest request window's, or a minute
}

// newLearning returns the learning for cfg, nil when it learns nothing.
func newLearning(cfg Config, now time.Time) *learning {
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
	return &learning{learner: aimd.New(aimd.Config{Period: period}, now), period: period}
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
	if d.learning == nil {
		return
	}
	sentBefore, allowed := d.limiter.SentIn(sent.Add(-d.learning.period), sent)
	if d.learning.learner.RateLimited(now, sent, sentBefore, allowed) {
		d.limiter.SetScale(d.learning.learner.Scale())
		d.log.Info("Provider refused a call its declared limits allowed; using less of them",
			"scale", d.learning.learner.Scale(), "sentInWindow", sentBefore, "allowed", allowed)
	}
}

// relearn gives back part of the declared limits for each clean period
// (called under d.mu).
func (d *Dispatcher) relearn(now time.Time) {
	if d.learning != nil && d.learning.learner.Tick(now) {
		d.limiter.SetScale(d.learning.learner.Scale())
	}
}
