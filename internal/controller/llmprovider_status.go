package controller

import (
	"fmt"
	"math/big"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// setUsage copies the dispatcher's live state into the provider's status.
func setUsage(st *llmv1.LLMProviderStatus, s dispatch.Stats) {
	// A window the spec does not limit reads "unlimited", not a blank
	// column.
	unlimited := func() *llmv1.WindowUsage { return &llmv1.WindowUsage{Summary: llmv1.UnlimitedSummary} }
	st.Usage = llmv1.ProviderUsage{Minute: unlimited(), Hour: unlimited(), Day: unlimited()}
	for _, w := range s.Quota.Windows {
		u := &llmv1.WindowUsage{Used: w.Used, Limit: w.Limit, LearnedLimit: w.Learned, Summary: fmt.Sprintf("%d/%d", w.Used, w.Limit)}
		if w.Learned != 0 {
			u.Summary = fmt.Sprintf("%d/%d (%d)", w.Used, w.Learned, w.Limit)
		}
		switch w.Name {
		case windowMinute:
			st.Usage.Minute = u
		case windowHour:
			st.Usage.Hour = u
		case windowDay:
			st.Usage.Day = u
		}
	}
	tokens := func(t ratewindow.WindowStats) *llmv1.WindowUsage {
		return &llmv1.WindowUsage{Used: t.Used, Limit: t.Limit, Summary: fmt.Sprintf("%d/%d", t.Used, t.Limit)}
	}
	if t := s.Quota.Tokens; t != nil {
		st.Usage.TokensPerMinute = tokens(*t)
	}
	for _, t := range s.Quota.TokenWindows {
		switch t.Name {
		case windowTokensPerDay:
			st.Usage.TokensPerDay = tokens(t)
		case windowInputPerMinute:
			st.Usage.InputTokensPerMinute = tokens(t)
		case windowOutputPerMinute:
			st.Usage.OutputTokensPerMinute = tokens(t)
		}
	}
	st.Usage.Interactive, st.Usage.Batch = laneUsage(s.Interactive), laneUsage(s.Batch)
	st.ConsecutiveFailures = int32(s.Quota.ConsecutiveFailures)
	st.BackoffUntil = timeOrNil(later(s.Quota.BackoffUntil, s.Quota.RetryAfterUntil))
	st.NextRequestAt = timeOrNil(s.Quota.Next.RetryAt)
	st.Cost = &llmv1.CostStatus{Day: s.Cost.Day, Today: llmv1.Decimal(s.Cost.Today), Month: s.Cost.Month, ThisMonth: llmv1.Decimal(s.Cost.ThisMonth),
		Committed: commitmentOf(s.Cost.Committed)}
	for _, t := range s.Teams {
		st.Cost.Namespaces = append(st.Cost.Namespaces, llmv1.NamespaceSpend{Namespace: t.Namespace, Today: llmv1.Decimal(t.Today),
			ThisMonth: llmv1.Decimal(t.ThisMonth), TokensIn: t.TokensIn, TokensOut: t.TokensOut})
	}
}

// commitmentOf is the commitment the status shows: what the dispatcher
// last persisted (commitments.go), none before a budget commits.
func commitmentOf(c cost.Period) *llmv1.CostCommitment {
	if isZero(c.Today) && isZero(c.ThisMonth) {
		return nil
	}
	return &llmv1.CostCommitment{Day: c.Day, Today: llmv1.Decimal(c.Today), Month: c.Month, ThisMonth: llmv1.Decimal(c.ThisMonth)}
}

func isZero(decimal string) bool {
	r, ok := new(big.Rat).SetString(decimal)
	return !ok || r.Sign() == 0
}

func laneUsage(l dispatch.LaneStats) *llmv1.LaneUsage {
	return &llmv1.LaneUsage{CallsLastMinute: l.Calls, TokensLastMinute: l.Tokens, RefusedLastMinute: l.Refused,
		InFlight: int32(l.InFlight), Waiting: int32(l.Waiting), Standby: int32(l.Standby)}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func timeOrNil(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	mt := metav1.NewTime(t.Truncate(time.Second))
	return &mt
}

// heldBy is what holds the provider's next call back: its budget, or its
// quota.
func heldBy(s dispatch.Stats) ratewindow.Decision {
	if !s.Held.Allowed {
		return s.Held
	}
	return s.Quota.Next
}

// rateLimitedCondition says which constraint holds calls back, if any.
// Only queued work makes a wait worth reporting.
func rateLimitedCondition(next ratewindow.Decision, queued int) metav1.Condition {
	return holdCondition(next, queued, "")
}

// holdCondition is rateLimitedCondition, worded for a batch when batchOf
// names its provider: then it names no moment the next call may go. A
// batch shows a hold until its provider was free of holds for a while
// (dispatch.HoldLinger), and is not written again while the provider's
// windows keep filling, so that moment would soon be past; the provider's
// status.nextRequestAt keeps it current. A budget names when it resets,
// which does not move, for a batch too.
func holdCondition(next ratewindow.Decision, queued int, batchOf string) metav1.Condition {
	c := metav1.Condition{Type: llmv1.ConditionRateLimited, Status: metav1.ConditionFalse, Reason: llmv1.ReasonWithinLimits, Message: "calls are admitted as they come"}
	if next.Allowed || queued == 0 {
		return c
	}
	reason := ""
	switch next.Reason {
	case ratewindow.ReasonWindow:
		reason = map[string]string{windowMinute: llmv1.ReasonMinuteWindowFull, windowHour: llmv1.ReasonHourWindowFull, windowDay: llmv1.ReasonDayWindowFull}[next.Window]
	case ratewindow.ReasonTokens:
		reason = llmv1.ReasonTokenWindowFull
	case ratewindow.ReasonMinInterval:
		reason = llmv1.ReasonMinInterval
	case ratewindow.ReasonBackoff:
		reason = llmv1.ReasonBackingOff
	case ratewindow.ReasonRetryAfter:
		reason = llmv1.ReasonRetryAfter
	case ratewindow.ReasonBudget:
		reason = map[string]string{"daily": llmv1.ReasonDailyBudgetExhausted, "monthly": llmv1.ReasonMonthlyBudgetExhausted,
			dispatch.NamespaceBudgetWindow + "daily":   llmv1.ReasonNamespaceDailyBudgetExhausted,
			dispatch.NamespaceBudgetWindow + "monthly": llmv1.ReasonNamespaceMonthlyBudgetExhausted}[next.Window]
	}
	if held, ok := scopeLimitCondition(next, batchOf != ""); ok {
		return held
	}
	if reason == "" || next.RetryAt.IsZero() {
		return c
	}
	c.Status, c.Reason = metav1.ConditionTrue, reason
	if what, ok := holdWords[reason]; ok && batchOf != "" {
		c.Message = fmt.Sprintf(what+"; its status.nextRequestAt says when", batchOf)
		return c
	}
	c.Message = "next call at " + next.RetryAt.UTC().Format(time.RFC3339)
	if next.Reason == ratewindow.ReasonBudget {
		c.Message = fmt.Sprintf("the %s budget (spec.cost.budgets.%s) has no room for the next call's worst-case cost; it resets at %s",
			next.Window, next.Window, next.RetryAt.UTC().Format(time.RFC3339))
		if period, ok := strings.CutPrefix(next.Window, dispatch.NamespaceBudgetWindow); ok {
			c.Message = fmt.Sprintf("this namespace's %s budget on the provider (its spec.shares) has no room for the next call's worst-case cost; "+
				"other namespaces go on; it resets at %s", period, next.RetryAt.UTC().Format(time.RFC3339))
		}
	}
	return c
}

// holdWords say what holds a batch back, by the RateLimited reason, for
// the holds whose end moves while they last.
var holdWords = map[string]string{
	llmv1.ReasonMinuteWindowFull: "the minute window of LLMProvider %s is full",
	llmv1.ReasonHourWindowFull:   "the hour window of LLMProvider %s is full",
	llmv1.ReasonDayWindowFull:    "the day window of LLMProvider %s is full",
	llmv1.ReasonTokenWindowFull:  "a token window of LLMProvider %s is full",
	llmv1.ReasonMinInterval:      "LLMProvider %s spaces its calls by spec.limits.minIntervalMilliseconds",
	llmv1.ReasonBackingOff:       "LLMProvider %s backs off after failed calls",
	llmv1.ReasonRetryAfter:       "the server of LLMProvider %s asked to wait (Retry-After)",
}

// scopeLimitCondition says which of a namespace's or a model's own limits
// holds calls back, when one does; timeless names no moment the next call
// may go (holdCondition).
func scopeLimitCondition(next ratewindow.Decision, timeless bool) (metav1.Condition, bool) {
	for _, scope := range []struct{ prefix, reason, whose, where, others string }{
		{dispatch.NamespaceLimitWindow, llmv1.ReasonNamespaceLimitReached, "namespace", "its spec.shares", "other namespaces"},
		{dispatch.ModelLimitWindow, llmv1.ReasonModelLimitReached, "model", "spec.modelLimits", "other models"},
	} {
		limit, ok := strings.CutPrefix(next.Window, scope.prefix)
		if !ok {
			continue
		}
		msg := fmt.Sprintf("this %s's own %s limit on the provider (%s) is full; %s go on; ", scope.whose, limit, scope.where, scope.others)
		switch {
		case next.RetryAt.IsZero():
			msg += "the next call waits for one of the " + scope.whose + "'s calls to end"
		case timeless:
			msg += "the next call waits for it to free"
		default:
			msg += "next call at " + next.RetryAt.UTC().Format(time.RFC3339)
		}
		return metav1.Condition{Type: llmv1.ConditionRateLimited, Status: metav1.ConditionTrue, Reason: scope.reason, Message: msg}, true
	}
	return metav1.Condition{}, false
}

func degradedCondition(s dispatch.Stats) metav1.Condition {
	switch {
	case s.AuthError != "":
		return metav1.Condition{Type: llmv1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: llmv1.ReasonAuthFailed,
			Message: "the provider refused the credentials: " + s.AuthError}
	case s.Quota.ConsecutiveFailures >= circuitThreshold:
		return metav1.Condition{Type: llmv1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: llmv1.ReasonCircuitOpen,
			Message: fmt.Sprintf("%d consecutive failures: new items go to the fallback while the backoff holds", s.Quota.ConsecutiveFailures)}
	case s.Quota.ConsecutiveFailures >= degradedThreshold:
		return metav1.Condition{Type: llmv1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: llmv1.ReasonConsecutiveFailures,
			Message: fmt.Sprintf("%d consecutive failures", s.Quota.ConsecutiveFailures)}
	}
	return metav1.Condition{Type: llmv1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: llmv1.ReasonHealthy, Message: "recent calls succeed"}
}

func costAlertCondition(p *llmv1.LLMProvider, s dispatch.Stats) metav1.Condition {
	c := metav1.Condition{Type: llmv1.ConditionCostAlert, Status: metav1.ConditionFalse, Reason: llmv1.ReasonWithinThreshold,
		Message: fmt.Sprintf("today %s USD, this month %s USD", s.Cost.Today, s.Cost.ThisMonth)}
	th := thresholds(p)
	switch {
	case s.Cost.MonthlyExceeded:
		c.Status, c.Reason = metav1.ConditionTrue, llmv1.ReasonMonthlyThresholdExceeded
		c.Message = fmt.Sprintf("cost this month (%s) %s USD is above the monthly threshold %s USD", s.Cost.Month, s.Cost.ThisMonth, th.Monthly)
	case s.Cost.DailyExceeded:
		c.Status, c.Reason = metav1.ConditionTrue, llmv1.ReasonDailyThresholdExceeded
		c.Message = fmt.Sprintf("cost today (%s) %s USD is above the daily threshold %s USD", s.Cost.Day, s.Cost.Today, th.Daily)
	}
	return c
}

// setCondition sets c at now and reports whether its status or reason changed.
func setCondition(conds *[]metav1.Condition, c metav1.Condition, generation int64, now time.Time) bool {
	changed := true
	if old := meta.FindStatusCondition(*conds, c.Type); old != nil { // read before SetStatusCondition rewrites it in place
		changed = old.Status != c.Status || old.Reason != c.Reason
	}
	c.ObservedGeneration = generation
	c.LastTransitionTime = metav1.NewTime(now)
	meta.SetStatusCondition(conds, c)
	return changed
}
