package dispatch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/llmquota/llmquota/internal/cost"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// slidingServer is a provider whose account takes limit calls in any
// minute, whatever the caller declares: a call past it gets 429, with the
// time its window frees when retryAfter is set (as the emulator, Gemini
// and Anthropic answer), without when not (as some OpenAI-compatible
// servers do).
type slidingServer struct {
	limit      int
	retryAfter bool
	accepted   []time.Time
	refused    int
}

func (s *slidingServer) call(now time.Time) *provider.Error {
	for len(s.accepted) > 0 && !s.accepted[0].After(now.Add(-time.Minute)) {
		s.accepted = s.accepted[1:]
	}
	if len(s.accepted) >= s.limit {
		s.refused++
		pe := &provider.Error{Class: provider.ClassRateLimited, Message: "quota"}
		if s.retryAfter {
			pe.RetryAt = s.accepted[0].Add(time.Minute)
		}
		return pe
	}
	s.accepted = append(s.accepted, now)
	return nil
}

// learnRun is ten minutes of a caller that always has work: it asks for
// quota, sends each call granted to the server, and when refused waits
// until the time it was given. It counts the calls answered and the
// server's refusals, and samples the learned minute limit each second
// after settle.
type learnRun struct {
	answered, refused int
	// learned are the minute window's limits in use, sampled each second
	// from settle on.
	learned []int64
}

func runLearning(t *testing.T, srv *slidingServer, declared int, learn bool, settle time.Duration) learnRun {
	const length = 10 * time.Minute
	t.Helper()
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	fc := clocktesting.NewFakeClock(t0)
	d, err := New(Config{Name: "p", Client: &stubClient{}, LearnLimits: learn,
		Limits: ratewindow.Config{Windows: []ratewindow.Window{{Name: "minute", Limit: int64(declared), Period: time.Minute}}, MaxConcurrency: 64,
			InitialBackoff: 2 * time.Second, MaxBackoff: time.Minute}}, // the provider defaults
		nil, fc, logr.Discard(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var run learnRun
	nextSample := t0.Add(settle)
	for fc.Now().Before(t0.Add(length)) {
		for !fc.Now().Before(nextSample) {
			w := d.Quota().Windows[0]
			run.learned = append(run.learned, max(w.Learned, map[bool]int64{true: w.Limit}[w.Learned == 0]))
			nextSample = nextSample.Add(time.Second)
		}
		g, dec, err := d.Acquire(context.Background(), Ask{MaxTokens: 16})
		switch {
		case err != nil:
			t.Fatal(err)
		case g != nil:
			if pe := srv.call(fc.Now()); pe != nil {
				g.Done(nil, pe)
			} else {
				run.answered++
				g.Done(&provider.Response{InputTokens: 1, OutputTokens: 1}, nil)
			}
			fc.Step(10 * time.Millisecond) // the next call a little later: calls take time
		case dec.RetryAt.IsZero():
			t.Fatalf("refused by %v without a time to come back", dec.Reason)
		default:
			fc.SetTime(dec.RetryAt)
		}
	}
	run.refused = srv.refused
	return run
}

// TestLearnsLimitsDeclaredTooHigh: declared at twice what the account
// takes, the learned minute limit is within 10% of the real one from the
// second minute on, and fewer than 5% of the calls sent are refused over
// ten minutes, whether the 429s say when to come back or not. Without
// learning, a server that does not say is refused far more: the check can
// fail.
func TestLearnsLimitsDeclaredTooHigh(t *testing.T) {
	const declared, real = 120, 60
	for _, retryAfter := range []bool{true, false} {
		t.Run(map[bool]string{true: "429s with Retry-After", false: "429s without Retry-After"}[retryAfter], func(t *testing.T) {
			run := runLearning(t, &slidingServer{limit: real, retryAfter: retryAfter}, declared, true, 2*time.Minute)
			sent := run.answered + run.refused
			lo, hi := int64(real*9/10), int64(real*11/10)
			for i, l := range run.learned {
				if l < lo || l > hi {
					t.Fatalf("learned minute limit %d at %v, want %d to %d from the second minute on", l, 2*time.Minute+time.Duration(i)*time.Second, lo, hi)
				}
			}
			refusedShare := float64(run.refused) / float64(sent)
			t.Logf("declared %d/min, the account takes %d: %d answered in ten minutes (%.1f%% of %d), %d refused of %d sent (%.2f%%); learned limit %d to %d from the second minute",
				declared, real, run.answered, 100*float64(run.answered)/(10*real), 10*real, run.refused, sent, 100*refusedShare, slices.Min(run.learned), slices.Max(run.learned))
			if refusedShare >= 0.05 || run.answered < 10*real*9/10 {
				t.Fatalf("%.1f%% of calls refused (want under 5%%), %d answered (want 90%% of %d at least)", 100*refusedShare, run.answered, 10*real)
			}
			if retryAfter {
				return
			}
			off := runLearning(t, &slidingServer{limit: real}, declared, false, 0)
			offShare := float64(off.refused) / float64(off.answered+off.refused)
			t.Logf("without learning: %d answered, %d refused of %d sent (%.2f%%)", off.answered, off.refused, off.answered+off.refused, 100*offShare)
			if offShare < 0.05 {
				t.Fatalf("without learning only %.2f%% refused: the run does not show what learning is for", 100*offShare)
			}
		})
	}
}

// TestLearningCostsNothingWhenLimitsAreRight: declared as the account
// takes them, ten minutes with learning answer within 1% of the calls
// answered without it (the baseline), none is refused, and the limits in
// use stay as declared.
func TestLearningCostsNothingWhenLimitsAreRight(t *testing.T) {
	on := runLearning(t, &slidingServer{limit: 60}, 60, true, 0)
	off := runLearning(t, &slidingServer{limit: 60}, 60, false, 0)
	t.Logf("limits right: %d answered with learning, %d without; %d and %d refused", on.answered, off.answered, on.refused, off.refused)
	if on.answered < off.answered*99/100 || on.refused != 0 {
		t.Fatalf("with learning %d answered (%d refused), without %d", on.answered, on.refused, off.answered)
	}
	for _, l := range on.learned {
		if l != 60 {
			t.Fatalf("learned limit %d with right limits", l)
		}
	}
}

// refuseNth answers 429 without Retry-After to its nth call, as a server
// whose account took fewer calls than declared.
type refuseNth struct {
	stubClient
	nth int
}

func (r *refuseNth) Generate(ctx context.Context, req provider.Request) (*provider.Response, error) {
	resp, _ := r.stubClient.Generate(ctx, req)
	if r.count() == r.nth {
		return nil, &provider.Error{Class: provider.ClassRateLimited, Message: "quota"}
	}
	return resp, nil
}

// TestBatchCallsTeachTheLearner: a batch item's 429 cuts the limits in use
// like a gateway call's: the 6th call in a window declared for 10 was
// refused, so the provider took 5 of the 10 allowed.
func TestBatchCallsTeachTheLearner(t *testing.T) {
	client := &refuseNth{nth: 6}
	d := start(t, Config{Name: "p", Client: client, LearnLimits: true, MaxRetries: 3, Limits: ratewindow.Config{
		Windows: []ratewindow.Window{{Name: "w", Limit: 10, Period: time.Second}}, MaxConcurrency: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}})
	col := newCollector(6)
	d.Submit(Batch{Key: "ns/b", Namespace: "ns", Size: 6, Items: items("x", 6), OnResult: col.add})
	for _, r := range col.wait(t, 30*time.Second) {
		if !r.Succeeded {
			t.Fatalf("item %s failed: %+v", r.ID, r)
		}
	}
	// Cut to 0.5; each clean second since gives 0.05 back.
	if s := d.Stats(cost.Thresholds{}).LearnedScale; s < 0.5 || s >= 1 {
		t.Fatalf("learned scale %v after a 429 for the 6th call of 10 allowed, want from 0.5", s)
	}
}
