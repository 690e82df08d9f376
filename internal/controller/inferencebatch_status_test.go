package controller

import (
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/ratewindow"
	"github.com/llmquota/llmquota/internal/results"
)

// TestSetProgress: every state a running or finished batch is in, and
// the conditions and columns a user reads for it (cert-manager's table
// tests of its status builders).
func TestSetProgress(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	next := now.Add(40 * time.Second)
	limit := func(r ratewindow.Reason, window string) dispatch.Progress {
		return dispatch.Progress{Queued: 3, Limit: ratewindow.Decision{Reason: r, Window: window, RetryAt: next}}
	}
	running := observation{total: 10, kept: 8, filtered: 2, stored: map[string]int32{results.Succeeded: 3},
		progress: dispatch.Progress{Queued: 3, InFlight: 2, Limit: ratewindow.Decision{Allowed: true}}, eta: now.Add(time.Minute)}
	with := func(edit func(*observation)) observation {
		o := running
		o.stored = map[string]int32{results.Succeeded: 3}
		edit(&o)
		return o
	}
	type want struct {
		finished                    bool
		progressing                 string // Progressing's reason
		progressingTrue             bool
		rateLimited                 string // RateLimited's reason
		complete, failed, finishedC string // their reasons
		progress                    string // status.progress
	}
	for _, tc := range []struct {
		name    string
		suspend bool
		o       observation
		want    want
	}{
		{"running", false, running,
			want{progressing: llmv1.ReasonRunning, progressingTrue: true, rateLimited: llmv1.ReasonWithinLimits,
				complete: llmv1.ReasonItemsPending, failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"suspended", true, running,
			want{progressing: llmv1.ReasonSuspended, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"minute window full, nothing in flight", false, with(func(o *observation) { o.progress = limit(ratewindow.ReasonWindow, windowMinute) }),
			want{progressing: llmv1.ReasonMinuteWindowFull, rateLimited: llmv1.ReasonMinuteWindowFull, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"backing off", false, with(func(o *observation) {
			o.progress = limit(ratewindow.ReasonBackoff, "")
			o.progress.BackingOff = true
		}),
			want{progressing: llmv1.ReasonBackingOff, rateLimited: llmv1.ReasonBackingOff, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"the namespace's budget", false, with(func(o *observation) {
			o.progress = limit(ratewindow.ReasonBudget, dispatch.NamespaceBudgetWindow+"daily")
		}),
			want{progressing: llmv1.ReasonNamespaceDailyBudgetExhausted, rateLimited: llmv1.ReasonNamespaceDailyBudgetExhausted,
				complete: llmv1.ReasonItemsPending, failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"the namespace's own minute limit", false, with(func(o *observation) {
			o.progress = limit(ratewindow.ReasonWindow, dispatch.NamespaceLimitWindow+"minute")
		}),
			want{progressing: llmv1.ReasonNamespaceLimitReached, rateLimited: llmv1.ReasonNamespaceLimitReached,
				complete: llmv1.ReasonItemsPending, failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"the model's own minute limit", false, with(func(o *observation) {
			o.progress = limit(ratewindow.ReasonWindow, dispatch.ModelLimitWindow+"minute")
		}),
			want{progressing: llmv1.ReasonModelLimitReached, rateLimited: llmv1.ReasonModelLimitReached,
				complete: llmv1.ReasonItemsPending, failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"the provider's monthly budget", false, with(func(o *observation) { o.progress = limit(ratewindow.ReasonBudget, "monthly") }),
			want{progressing: llmv1.ReasonMonthlyBudgetExhausted, rateLimited: llmv1.ReasonMonthlyBudgetExhausted,
				complete: llmv1.ReasonItemsPending, failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"a minimum interval is pacing, not a wait", false, with(func(o *observation) { o.progress = limit(ratewindow.ReasonMinInterval, "") }),
			want{progressing: llmv1.ReasonRunning, progressingTrue: true, rateLimited: llmv1.ReasonMinInterval, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"input unavailable", false, with(func(o *observation) { o.readErr = errors.New("object changed") }),
			want{progressing: llmv1.ReasonInputUnavailable, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"output unavailable", false, with(func(o *observation) { o.writeErr, o.waiting = errors.New("bucket gone"), 4 }),
			want{progressing: llmv1.ReasonOutputUnavailable, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"no warm endpoint", false, with(func(o *observation) {
			o.progress = dispatch.Progress{Queued: 5, NoWarmEndpoint: true, Limit: ratewindow.Decision{Allowed: true}}
		}),
			want{progressing: llmv1.ReasonNoWarmEndpoint, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "5/10"}},
		{"succeeded", false, with(func(o *observation) {
			o.stored = map[string]int32{results.Succeeded: 6, results.Cached: 2}
			o.progress = dispatch.Progress{Limit: ratewindow.Decision{Allowed: true}}
		}),
			want{finished: true, progressing: llmv1.ReasonSucceeded, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonSucceeded,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonSucceeded, progress: "10/10"}},
		{"items failed", false, with(func(o *observation) {
			o.stored = map[string]int32{results.Succeeded: 6, results.Failed: 2}
			o.progress = dispatch.Progress{Limit: ratewindow.Decision{Allowed: true}}
		}),
			want{finished: true, progressing: llmv1.ReasonItemsFailed, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonItemsFailed,
				failed: llmv1.ReasonItemsFailed, finishedC: llmv1.ReasonItemsFailed, progress: "10/10"}},
		{"every result known but one waits for its write", false, with(func(o *observation) {
			o.stored = map[string]int32{results.Succeeded: 8}
			o.waiting = 1
			o.progress = dispatch.Progress{Limit: ratewindow.Decision{Allowed: true}}
		}),
			want{progressing: llmv1.ReasonRunning, progressingTrue: true, rateLimited: llmv1.ReasonWithinLimits, complete: llmv1.ReasonItemsPending,
				failed: llmv1.ReasonNoFailure, finishedC: llmv1.ReasonNotFinished, progress: "10/10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Generation: 1}, Spec: llmv1.InferenceBatchSpec{Suspend: tc.suspend, BatchSize: 5,
				ProviderRef: llmv1.ProviderReference{Name: "gemini"}}}
			finished := setProgress(b, tc.o, now)
			reason := func(typ string) string {
				if c := meta.FindStatusCondition(b.Status.Conditions, typ); c != nil {
					return c.Reason
				}
				return ""
			}
			got := want{finished: finished, progressing: reason(llmv1.ConditionProgressing),
				progressingTrue: meta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionProgressing),
				rateLimited:     reason(llmv1.ConditionRateLimited), complete: reason(llmv1.ConditionComplete),
				failed: reason(llmv1.ConditionFailed), finishedC: reason(llmv1.ConditionFinished), progress: b.Status.Progress}
			if got != tc.want {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
			// A suspended batch, one a budget holds and a finished one have no completion to estimate.
			budget := tc.want.rateLimited == llmv1.ReasonNamespaceDailyBudgetExhausted || tc.want.rateLimited == llmv1.ReasonMonthlyBudgetExhausted
			if shown, want := b.Status.EstimatedCompletionTime != nil, !tc.suspend && !finished && !budget; shown != want {
				t.Fatalf("estimated completion shown: %v, want %v", shown, want)
			}
			if c := b.Status.Counts; c.Total != 10 || c.Filtered != 2 || c.Pending < 0 {
				t.Fatalf("counts %+v", c)
			}
		})
	}
}

// TestBatchHoldNamesNoMovingTime: a batch's hold is shown until its
// provider was free of holds for a while and is not written again while
// the windows keep filling, so its message names no next-call time, which
// would soon be past, and points at the provider's nextRequestAt; a
// budget keeps the time it resets, which does not move.
func TestBatchHoldNamesNoMovingTime(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	at := now.Add(40 * time.Second)
	stamp := at.Format(time.RFC3339)
	for _, tc := range []struct {
		reason   ratewindow.Reason
		window   string
		wantTime bool
	}{
		{ratewindow.ReasonWindow, windowMinute, false},
		{ratewindow.ReasonWindow, windowDay, false},
		{ratewindow.ReasonTokens, "tokensPerMinute", false},
		{ratewindow.ReasonBackoff, "", false},
		{ratewindow.ReasonRetryAfter, "", false},
		{ratewindow.ReasonWindow, dispatch.NamespaceLimitWindow + "minute", false},
		{ratewindow.ReasonWindow, dispatch.ModelLimitWindow + "minute", false},
		{ratewindow.ReasonBudget, "daily", true},
		{ratewindow.ReasonBudget, dispatch.NamespaceBudgetWindow + "monthly", true},
	} {
		b := &llmv1.InferenceBatch{Spec: llmv1.InferenceBatchSpec{BatchSize: 5, ProviderRef: llmv1.ProviderReference{Name: "gemini"}}}
		setProgress(b, observation{total: 4, kept: 4, progress: dispatch.Progress{Queued: 4,
			Limit: ratewindow.Decision{Reason: tc.reason, Window: tc.window, RetryAt: at}}}, now)
		c := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionRateLimited)
		if c == nil || c.Status != metav1.ConditionTrue {
			t.Fatalf("%v %s: RateLimited %+v, want True", tc.reason, tc.window, c)
		}
		if named := strings.Contains(c.Message, stamp); named != tc.wantTime {
			t.Errorf("%v %s: message %q names %s: %v, want %v", tc.reason, tc.window, c.Message, stamp, named, tc.wantTime)
		}
		if !tc.wantTime && !strings.Contains(c.Message, "status.nextRequestAt") && !strings.HasSuffix(c.Message, "waits for it to free") {
			t.Errorf("%v %s: message %q says neither where the next call's time is nor what it waits for", tc.reason, tc.window, c.Message)
		}
		if p := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionProgressing); !strings.HasSuffix(p.Message, c.Message) {
			t.Errorf("%v %s: Progressing says %q, not what holds the batch", tc.reason, tc.window, p.Message)
		}
	}
}
