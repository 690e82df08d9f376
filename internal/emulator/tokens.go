package emulator

import "time"

// charge is the tokens one admitted request holds in its key's token
// windows of one kind: its cap (max_tokens, plus its prompt for a window of
// all tokens) until it is answered, then what it used.
type charge struct {
	at     time.Time
	tokens int
}

// tokenWindows are a key's token windows of one kind and what they hold.
type tokenWindows struct {
	limits  []TokenLimit
	charges map[string][]*charge // per key, oldest first
}

// wait returns how long until every window has room for tokens more for
// key, 0 if they have room now (called under the server's lock). It keeps
// only what can matter.
func (w *tokenWindows) wait(key string, now time.Time, tokens int) time.Duration {
	charges := w.charges[key]
	var wait, longest time.Duration
	for _, l := range w.limits {
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
	w.charges[key] = charges
	return wait
}

// charge records an admitted request's tokens and returns the charge, to
// be corrected once it is answered; nil when there is no window.
func (w *tokenWindows) charge(key string, now time.Time, tokens int) *charge {
	if len(w.limits) == 0 {
		return nil
	}
	c := &charge{at: now, tokens: tokens}
	w.charges[key] = append(w.charges[key], c)
	return c
}

// tokenCharges admits a request to every kind of token window, or says
// how long until it fits (called under s.mu); used corrects its charges
// once it is answered, to what it used. Its input is known when it arrives
// and charged as it is.
func (s *Server) tokenCharges(c call, now time.Time) (wait time.Duration, admit func() (used func(output int))) {
	output := c.maxTokens
	if output <= 0 {
		output = answerTokens(c).total()
	}
	input := promptTokens(c.prompt)
	wait = max(s.outputs.wait(c.key, now, output), s.totals.wait(c.key, now, input+output), s.inputs.wait(c.key, now, input))
	return wait, func() func(int) {
		s.inputs.charge(c.key, now, input)
		out, all := s.outputs.charge(c.key, now, output), s.totals.charge(c.key, now, input+output)
		return func(used int) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if out != nil {
				out.tokens = min(out.tokens, used)
			}
			if all != nil {
				all.tokens = min(all.tokens, input+used)
			}
		}
	}
}
