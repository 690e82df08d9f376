package ratewindow

import "time"

// Reason says why a call was refused.
type Reason uint8

const (
	// ReasonNone means the call was admitted.
	ReasonNone Reason = iota
	// ReasonWindow means a request window is full; Decision.Window names it.
	ReasonWindow
	// ReasonTokens means the tokens window has no room for the cost.
	ReasonTokens
	// ReasonMinInterval means the minimum interval since the last admission has not passed.
	ReasonMinInterval
	// ReasonBackoff means consecutive failures hold calls back.
	ReasonBackoff
	// ReasonRetryAfter means a server's Retry-After holds calls back.
	ReasonRetryAfter
	// ReasonConcurrency means every concurrency slot is taken; Release frees one.
	ReasonConcurrency
	// ReasonReservation means Config.RequireReservation is set and no reserved
	// slot is left; Reserve (and persist a Snapshot) first.
	ReasonReservation
	// ReasonTooLarge means the cost is above the tokens window's limit; no wait helps.
	ReasonTooLarge
	// ReasonBudget is never given by a Limiter: a caller holding calls for
	// a spending budget of its own reports it in a Decision of its own
	// (Window names the budget, RetryAt when it resets).
	ReasonBudget
	// ReasonNoEndpoint is never given by a Limiter either: a pool of
	// servers (Ollama pods) has none warm to send to.
	ReasonNoEndpoint
)

var reasonNames = [...]string{"None", "Window", "Tokens", "MinInterval", "Backoff", "RetryAfter", "Concurrency", "Reservation", "TooLarge", "Budget", "NoEndpoint"}

// String returns the reason's name.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "Unknown"
}

// Decision answers whether a call may start now, and if not, when and why.
type Decision struct {
	// Allowed is true when the call was (for Admit) or would be (for Decide) admitted.
	Allowed bool
	// RetryAt is the earliest time asking again can succeed, exact when
	// nothing else is admitted in between. It is zero when Allowed, and for
	// ReasonConcurrency, ReasonReservation and ReasonTooLarge, which no wait
	// alone resolves. Time-based reasons are reported before those three.
	RetryAt time.Time
	// Reason says which constraint refused the call: of all that refuse it,
	// the one that holds longest (the first in window order on a tie).
	Reason Reason
	// Window names the window for ReasonWindow and ReasonTokens.
	Window string
}

// Outcome classifies a finished call for the backoff.
type Outcome uint8

const (
	// OutcomeNeutral releases the slot without touching the backoff: the
	// call's failure says nothing about the provider (a bad request).
	OutcomeNeutral Outcome = iota
	// OutcomeSuccess resets the consecutive failures and the backoff hold.
	OutcomeSuccess
	// OutcomeFailure counts a consecutive failure and extends the backoff hold.
	OutcomeFailure
)

// Result is what the caller learned from a finished call.
type Result struct {
	// Outcome drives the backoff.
	Outcome Outcome
	// RetryAfter, when not zero, holds every call until then (a server's
	// Retry-After or rate-limit reset).
	RetryAfter time.Time
	// Extra is what the call used beyond the cost given to Admit (the
	// real output was longer than estimated), added at release time; a
	// negative part gives nothing back.
	Extra Cost
}
