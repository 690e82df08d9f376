package ratewindow

import (
	"errors"
	"fmt"
	"time"
)

// Window is a limit of Limit admissions in any rolling Period.
type Window struct {
	// Name identifies the window in decisions and stats ("minute", "hour").
	Name string
	// Limit is the most admissions (or, for the tokens window, the most
	// total cost) in any interval of length Period.
	Limit int64
	// Period is the window's length.
	Period time.Duration
}

// TokenKind says which of a call's tokens a token window counts.
type TokenKind uint8

// The kinds of token windows.
const (
	// TokensTotal counts input and output tokens together.
	TokensTotal TokenKind = iota
	// TokensInput counts input tokens only.
	TokensInput
	// TokensOutput counts output tokens only (thinking included).
	TokensOutput
)

// TokenWindow is a weighted window over one kind of a call's tokens.
type TokenWindow struct {
	Window
	Kind TokenKind
}

// Cost is what a call charges the token windows: its input and its output
// tokens (estimated at admission, corrected at release).
type Cost struct {
	Input, Output int64
}

// Total is the input and output together.
func (c Cost) Total() int64 { return c.Input + c.Output }

// of is the part of c a window of kind k counts.
func (c Cost) of(k TokenKind) int64 { return k.of(c) }

// of is the part of c a window of kind k counts.
func (k TokenKind) of(c Cost) int64 {
	switch k {
	case TokensInput:
		return c.Input
	case TokensOutput:
		return c.Output
	}
	return c.Total()
}

// Config describes a Limiter. The zero value admits everything.
type Config struct {
	// Windows are request-count windows, checked in order.
	Windows []Window
	// Tokens is an optional weighted window: each admission carries a cost
	// and the window holds the sum of costs (input and output together).
	Tokens *Window
	// TokenWindows are further weighted windows, each over one kind of
	// tokens (a day's tokens, input or output tokens per minute). Their
	// names must be unique.
	TokenWindows []TokenWindow
	// MinInterval is the least time between two admissions.
	MinInterval time.Duration
	// MaxConcurrency is the most admissions not yet released; 0 means no limit.
	MaxConcurrency int
	// InitialBackoff is the hold after the first consecutive failure; each
	// further failure doubles it, up to MaxBackoff. Zero disables backoff.
	InitialBackoff time.Duration
	// MaxBackoff caps the failure hold.
	MaxBackoff time.Duration
	// Jitter, in [0, 1], shortens each backoff hold by a random fraction of
	// up to Jitter, so many clients do not retry in step. 0 is exact.
	Jitter float64
	// Rand returns a number in [0, 1) for the jitter; nil uses math/rand/v2.
	Rand func() float64
	// RequireReservation makes Admit refuse, with ReasonReservation, when no
	// reserved slot is left: the caller must Reserve (and persist a
	// Snapshot) before it may spend more. See Reserve.
	RequireReservation bool
}

// maxRingCapacity bounds the memory of one limiter's admission history.
const maxRingCapacity = 1 << 26

func (c *Config) validate() error {
	var errs []error
	check := func(w Window, what string) {
		if w.Limit <= 0 {
			errs = append(errs, fmt.Errorf("%s %q: limit must be positive, got %d", what, w.Name, w.Limit))
		}
		if w.Period <= 0 {
			errs = append(errs, fmt.Errorf("%s %q: period must be positive, got %s", what, w.Name, w.Period))
		}
	}
	for _, w := range c.Windows {
		check(w, "window")
		if w.Limit > maxRingCapacity {
			errs = append(errs, fmt.Errorf("window %q: limit %d is above the supported %d", w.Name, w.Limit, maxRingCapacity))
		}
	}
	if c.Tokens != nil {
		check(*c.Tokens, "tokens window")
	}
	names := map[string]bool{}
	for _, tw := range c.TokenWindows {
		check(tw.Window, "tokens window")
		if names[tw.Name] || (c.Tokens != nil && c.Tokens.Name == tw.Name) {
			errs = append(errs, fmt.Errorf("tokens window %q: the name is used twice", tw.Name))
		}
		names[tw.Name] = true
		if tw.Kind > TokensOutput {
			errs = append(errs, fmt.Errorf("tokens window %q: unknown kind %d", tw.Name, tw.Kind))
		}
	}
	if c.MinInterval < 0 {
		errs = append(errs, fmt.Errorf("min interval must not be negative, got %s", c.MinInterval))
	}
	if c.MaxConcurrency < 0 {
		errs = append(errs, fmt.Errorf("max concurrency must not be negative, got %d", c.MaxConcurrency))
	}
	if c.InitialBackoff < 0 || c.MaxBackoff < 0 {
		errs = append(errs, errors.New("backoff durations must not be negative"))
	}
	if c.InitialBackoff > 0 && c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, fmt.Errorf("max backoff %s is less than initial backoff %s", c.MaxBackoff, c.InitialBackoff))
	}
	if c.Jitter < 0 || c.Jitter > 1 {
		errs = append(errs, fmt.Errorf("jitter must be in [0, 1], got %v", c.Jitter))
	}
	return errors.Join(errs...)
}

// ringCapacity is the longest history any window needs: the last Limit
// admissions of the largest window.
func (c *Config) ringCapacity() int {
	n := int64(0)
	for _, w := range c.Windows {
		n = max(n, w.Limit)
	}
	return int(n)
}
