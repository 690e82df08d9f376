package controller

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/items"
	"github.com/llmquota/llmquota/internal/results"
)

// observation is what the reconciler saw of a running batch.
type observation struct {
	total, kept, filtered int
	stored                map[string]int32 // stored results by status
	progress              dispatch.Progress
	eta                   time.Time
	refs                  []llmv1.ResultReference
	// waiting counts results (filtered ones included) not yet written.
	waiting int
	// writeErr says why results could not be written, when they cannot.
	writeErr error
	// readErr says why the rest of the input cannot be read, when it cannot.
	readErr error
}

// setProgress writes counts and conditions from an observation and reports
// whether every kept item has a stored result.
func setProgress(b *llmv1.InferenceBatch, o observation, now time.Time) (complete bool) {
	st := &b.Status
	done := o.stored[results.Succeeded] + o.stored[results.Failed] + o.stored[results.Cached]
	st.Counts = llmv1.ItemCounts{
		Total: int32(o.total), Filtered: int32(o.filtered),
		Running:   int32(o.progress.InFlight),
		Succeeded: o.stored[results.Succeeded], Failed: o.stored[results.Failed], Cached: o.stored[results.Cached],
		Retries: max(st.Counts.Retries, int32(o.progress.Retries)),
	}
	st.Counts.Pending = max(0, int32(o.kept)-done-st.Counts.Running)
	st.Progress = fmt.Sprintf("%d/%d", done, o.total)
	size := int(max(1, b.Spec.BatchSize))
	st.Batches = llmv1.BatchCounts{Done: int32(int(done) / size), Total: int32(items.Batches(o.kept, size))}
	if int(done) == o.kept {
		st.Batches.Done = st.Batches.Total
	}
	st.Results = o.refs
	complete = int(done) >= o.kept && o.waiting == 0

	set := func(c metav1.Condition) { setCondition(&st.Conditions, c, b.Generation, now) }
	limited := rateLimitedCondition(o.progress.Limit, o.progress.Queued)
	if complete {
		limited = rateLimitedCondition(o.progress.Limit, 0)
	}
	set(limited)
	set(boolCondition(llmv1.ConditionBackingOff, o.progress.BackingOff && !complete, "FailuresBackingOff", "NotBackingOff",
		"the provider backs off after failed calls", "no backoff holds this batch"))
	set(boolCondition(llmv1.ConditionSuspended, b.Spec.Suspend, "SuspendedByUser", "NotSuspended",
		"spec.suspend is true: calls in flight finish, nothing new starts", "the batch runs"))
	switch {
	case complete:
		set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: "AllItemsDone", Message: "every item has a stored result"})
	case b.Spec.Suspend:
		set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: "Suspended", Message: "spec.suspend is true"})
	case o.readErr != nil:
		set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: llmv1.ReasonInputUnavailable,
			Message: fmt.Sprintf("%d of %d items done; the rest of the input cannot be read, read again every 30s: %v", done, o.kept, o.readErr)})
	case o.writeErr != nil:
		set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: llmv1.ReasonOutputUnavailable,
			Message: fmt.Sprintf("%d results wait to be written, retried every second: %v", o.waiting, o.writeErr)})
	case o.progress.NoWarmEndpoint && o.progress.InFlight == 0:
		set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: "NoWarmEndpoint",
			Message: fmt.Sprintf("%d of %d items done; no endpoint of Ollama pool %s is warm, the rest wait until one is", done, o.kept, b.Spec.ProviderRef.Name)})
	default:
		set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionTrue, Reason: "ItemsRunning",
			Message: fmt.Sprintf("%d of %d items done, %d in flight", done, o.kept, o.progress.InFlight)})
	}
	if complete {
		set(metav1.Condition{Type: llmv1.ConditionComplete, Status: metav1.ConditionTrue, Reason: "AllItemsDone",
			Message: fmt.Sprintf("%d items done: %d succeeded, %d cached, %d failed; %d filtered", done, st.Counts.Succeeded, st.Counts.Cached, st.Counts.Failed, o.filtered)})
		if st.Counts.Failed > 0 {
			set(metav1.Condition{Type: llmv1.ConditionFailed, Status: metav1.ConditionTrue, Reason: llmv1.ReasonItemsFailed,
				Message: fmt.Sprintf("%d of %d items failed after their retries; see the results for each error", st.Counts.Failed, o.kept)})
		} else {
			set(notFailed())
		}
		st.EstimatedCompletionTime = nil
		return true
	}
	set(metav1.Condition{Type: llmv1.ConditionComplete, Status: metav1.ConditionFalse, Reason: "ItemsPending",
		Message: fmt.Sprintf("%d of %d items done", done, o.kept)})
	set(notFailed())
	st.EstimatedCompletionTime = timeOrNil(o.eta)
	return false
}

func notFailed() metav1.Condition {
	return metav1.Condition{Type: llmv1.ConditionFailed, Status: metav1.ConditionFalse, Reason: "NoFailure", Message: "nothing has failed"}
}

func boolCondition(typ string, on bool, yesReason, noReason, yesMsg, noMsg string) metav1.Condition {
	if on {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: yesReason, Message: yesMsg}
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: noReason, Message: noMsg}
}

// waiting marks a batch that cannot be admitted yet, for a reason that
// fixes itself or that the user fixes; failed says whether it is a Failed
// condition (bad input, missing provider) or only a wait.
func waiting(b *llmv1.InferenceBatch, reason, message string, failed bool, now time.Time) {
	set := func(c metav1.Condition) { setCondition(&b.Status.Conditions, c, b.Generation, now) }
	set(metav1.Condition{Type: llmv1.ConditionAdmitted, Status: metav1.ConditionFalse, Reason: reason, Message: message})
	set(metav1.Condition{Type: llmv1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: reason, Message: message})
	if failed {
		set(metav1.Condition{Type: llmv1.ConditionFailed, Status: metav1.ConditionTrue, Reason: reason, Message: message})
	} else {
		set(notFailed())
	}
}
