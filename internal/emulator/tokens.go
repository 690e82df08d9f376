package emulator

import "time"

// charge is the output tokens one admitted request holds in its key's
// output-token windows: its max_tokens until it is answered, then what it
// used.
type charge struct {
	at     time.Time
	tokens int
}

// outputWait returns how long until every output-token window of key has
// room for tokens more, 0 if they have room now (called under s.mu). It
// keeps only what can matter.
func (s *Server) outputWait(key string, now time.Time, tokens int) time.Duration {
	charges := s.outputs[key]
	var wait, longest time.Duration
	for _, l := range s.cfg.OutputTokenLimits {
		longest = max(longest, l.Period)
		used := 0
		for _, c := range charges {
			if c.at.After(now.Add(-l.Period)) {
				used += c.tokens
			}
		}
		// The oldest charges in the window leave first: wait until enough
		// of them have for tokens to fit.
		for _, c := range charges {
			if used+tokens <= l.Tokens {
				break
			}
			if c.at.After(now.Add(-l.Period)) {
				used -= c.tokens
				wait = max(wait, c.at.Add(l.Period).Sub(now))
			}
		}
		if tokens > l.Tokens {
			wait = max(wait, l.Period) // never fits; the client should not have sent it
		}
	}
	for len(charges) > 0 && !charges[0].at.After(now.Add(-longest)) {
		charges = charges[1:]
	}
	s.outputs[key] = charges
	return wait
}

// chargeOutput records an admitted request's max_tokens in its key's
// output-token windows and returns how to correct it once answered
// (called under s.mu; the correction takes the lock itself).
func (s *Server) chargeOutput(key string, now time.Time, tokens int) func(used int) {
	if len(s.cfg.OutputTokenLimits) == 0 {
		return func(int) {}
	}
	c := &charge{at: now, tokens: tokens}
	s.outputs[key] = append(s.outputs[key], c)
	return func(used int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		c.tokens = min(c.tokens, used)
	}
}
