package ratewindow

import (
	"time"
)

// model is the brute-force reference: it keeps every admission and answers
// by counting, with none of the Limiter's data structures.
type model struct {
	cfg        Config
	admissions []int64
	tokens     [][2]int64 // time, cost
	// deferred are calls counted at a later time than their admission
	// (time, cost), apart from admissions and tokens.
	deferred   [][2]int64
	inFlight   int
	failures   int
	backoff    int64
	retryAfter int64
}

func (m *model) allows(now, cost int64) bool {
	for _, w := range m.cfg.Windows {
		n := int64(0)
		for _, t := range m.admissions {
			if t > now-int64(w.Period) {
				n++
			}
		}
		for _, d := range m.deferred {
			if d[0] > now-int64(w.Period) {
				n++
			}
		}
		if n >= w.Limit {
			return false
		}
	}
	if tw := m.cfg.Tokens; tw != nil {
		sum := cost
		for _, e := range append(m.tokens, m.deferred...) {
			if e[0] > now-int64(tw.Period) {
				sum += e[1]
			}
		}
		if sum > tw.Limit {
			return false
		}
	}
	if len(m.admissions) > 0 && m.cfg.MinInterval > 0 && now < m.admissions[len(m.admissions)-1]+int64(m.cfg.MinInterval) {
		return false
	}
	if now < m.backoff || now < m.retryAfter {
		return false
	}
	return m.cfg.MaxConcurrency == 0 || m.inFlight < m.cfg.MaxConcurrency
}

func (m *model) admit(now, cost int64) {
	m.admissions = append(m.admissions, now)
	if m.cfg.Tokens != nil && cost > 0 {
		m.tokens = append(m.tokens, [2]int64{now, cost})
	}
	m.inFlight++
}

func (m *model) release(now int64, r Result) {
	m.inFlight = max(0, m.inFlight-1)
	switch r.Outcome {
	case OutcomeSuccess:
		m.failures, m.backoff = 0, 0
	case OutcomeFailure:
		m.failures++
		hold := m.cfg.InitialBackoff
		for i := 1; i < m.failures && hold < m.cfg.MaxBackoff; i++ {
			hold *= 2
		}
		hold = min(hold, m.cfg.MaxBackoff)
		m.backoff = max(m.backoff, now+int64(hold))
	}
	if !r.RetryAfter.IsZero() {
		m.retryAfter = max(m.retryAfter, r.RetryAfter.UnixNano())
	}
}

// violations checks the whole history: no window ever held more than its
// limit, and no two admissions were closer than the minimum interval.
func (m *model) violations() []string {
	var out []string
	for _, w := range m.cfg.Windows {
		for i, t := range m.admissions { // the busiest window ends at an admission
			n := int64(0)
			for _, u := range m.admissions[:i+1] {
				if u > t-int64(w.Period) {
					n++
				}
			}
			if n > w.Limit {
				out = append(out, w.Name+" window exceeded at "+time.Unix(0, t).String())
			}
		}
	}
	for i := 1; i < len(m.admissions); i++ {
		if m.admissions[i]-m.admissions[i-1] < int64(m.cfg.MinInterval) {
			out = append(out, "min interval broken")
		}
	}
	return out
}

// last is the time of the latest event the model saw, so a test never moves
// time backwards.
func (m *model) last() int64 {
	if len(m.admissions) == 0 {
		return 0
	}
	return m.admissions[len(m.admissions)-1]
}
