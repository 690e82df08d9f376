package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/batchrun"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/results"
)

// batchScope is what the phases of one reconcile of a batch share.
type batchScope struct {
	b   *llmv1.InferenceBatch
	key client.ObjectKey
	now time.Time
	// provider is the LLMProvider the batch names, d its dispatcher (nil
	// while it starts), run the batch's run (nil before admission).
	provider llmv1.LLMProvider
	d        *dispatch.Dispatcher
	run      *batchrun.Run
	// inDispatcher is true when the run is in the provider's current dispatcher.
	inDispatcher bool
	priority     int32
}

// batchPhase is one step of reconciling a batch, in the order of
// batchPhases. done ends the reconcile with res (and err).
type batchPhase func(ctx context.Context, s *batchScope) (res ctrl.Result, done bool, err error)

// reconcileBatch runs the phases of a batch in order, as Cluster API runs
// a Machine's: each may end the reconcile, with the batch's status set in
// memory for Reconcile to write.
func (r *InferenceBatchReconciler) reconcileBatch(ctx context.Context, b *llmv1.InferenceBatch) (ctrl.Result, error) {
	s := &batchScope{b: b, key: client.ObjectKeyFromObject(b), now: r.Clock.Now()}
	for _, phase := range []batchPhase{r.ended, r.provided, r.allowed, r.prioritized, r.admitted, r.progressed} {
		if res, done, err := phase(ctx, s); done || err != nil {
			return res, err
		}
	}
	return ctrl.Result{}, nil
}

// ended: a finished batch stops its run and waits for its TTL; one past its
// deadline fails.
func (r *InferenceBatchReconciler) ended(ctx context.Context, s *batchScope) (ctrl.Result, bool, error) {
	if finished(s.b) {
		r.Runtime.Stop(s.key)
		res, err := r.expire(ctx, s.b, s.now)
		return res, true, err
	}
	if deadline, ok := deadlineOf(s.b); ok && !s.now.Before(deadline) {
		res, err := r.failDeadline(ctx, s.b, s.now)
		return res, true, err
	}
	return ctrl.Result{}, false, nil
}

// provided: the batch's provider exists and a model is named; the
// dispatcher and the run, if any, are found.
func (r *InferenceBatchReconciler) provided(ctx context.Context, s *batchScope) (ctrl.Result, bool, error) {
	b := s.b
	if err := r.Get(ctx, types.NamespacedName{Name: string(b.Spec.ProviderRef.Name)}, &s.provider); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, true, err
		}
		// The provider watch wakes us when it appears.
		return r.waitStopped(ctx, s, llmv1.ReasonProviderNotFound, fmt.Sprintf("LLMProvider %q named by spec.providerRef does not exist", b.Spec.ProviderRef.Name), 0)
	}
	if b.Spec.Model == "" && s.provider.Spec.Model == "" {
		// Every call would fail with the provider's own error: say so now.
		// An edit of the batch or the provider wakes us.
		return r.waitStopped(ctx, s, llmv1.ReasonNoModel, fmt.Sprintf("neither spec.model nor LLMProvider %q's spec.model names a model to call: set one of them",
			s.provider.Name), 0)
	}
	s.d, s.run = r.Registry.Get(s.provider.Name), r.Runtime.Get(s.key)
	s.inDispatcher = s.run != nil && s.d != nil && s.run.Dispatcher == s.d && s.d.Has(s.key.String())
	return ctrl.Result{}, false, nil
}

// waitStopped shows the batch waiting for reason, checked again after
// recheck (0: when a watched object changes), and stops its run if it has
// one (stopRun). When the run's last results cannot be written yet, the
// run stays, out of its dispatcher, and the write is tried again a second
// later.
func (r *InferenceBatchReconciler) waitStopped(ctx context.Context, s *batchScope, reason, message string, recheck time.Duration) (ctrl.Result, bool, error) {
	r.transition(s.b, reason, message, s.now)
	if err := r.stopRun(ctx, s.b, s.key, s.now); err != nil {
		logf.FromContext(ctx).Error(err, "Writing the results of a batch that waits again; retrying")
		return ctrl.Result{RequeueAfter: stoppedWriteRetry}, true, nil
	}
	return ctrl.Result{RequeueAfter: recheck}, true, nil
}

// stoppedWriteRetry is how soon a stopped run's last results are written
// again after the write failed (as the run's own writer retries).
const stoppedWriteRetry = time.Second

// stopRun stops the batch's run, if it has one, once what it holds is
// written, and shows what it stored (showStopped): a batch that waits
// again (its provider deleted, its model unset) or passed its deadline
// keeps showing the results it has, and none is lost with the run. On an
// error the run is kept out of its dispatcher, its results in memory.
func (r *InferenceBatchReconciler) stopRun(ctx context.Context, b *llmv1.InferenceBatch, key types.NamespacedName, now time.Time) error {
	run := r.Runtime.Get(key)
	if run == nil {
		return nil
	}
	// Nothing more is sent; an answer still on its way is not kept, and its
	// item is sent again if the batch runs again (Dispatcher.Remove).
	run.Dispatcher.Remove(key.String())
	if _, err := run.Store.Flush(ctx); err != nil {
		return err
	}
	showStopped(b, run, now)
	r.Runtime.Stop(key)
	return nil
}

// allowed: a batch not yet admitted passes the admission checks (access,
// quota for the provider, budgets...), or waits with the reason.
func (r *InferenceBatchReconciler) allowed(ctx context.Context, s *batchScope) (ctrl.Result, bool, error) {
	if s.inDispatcher {
		return ctrl.Result{}, false, nil
	}
	h, err := r.admissionHold(ctx, s.b, &s.provider)
	switch {
	case err != nil:
		return ctrl.Result{}, true, err
	case h != nil:
		return r.waitStopped(ctx, s, h.reason, h.message, h.recheck)
	}
	return ctrl.Result{}, false, nil
}

// prioritized: the batch's priority (an admitted batch keeps its own when
// its class is gone); a dispatcher still starting is a short wait.
func (r *InferenceBatchReconciler) prioritized(ctx context.Context, s *batchScope) (ctrl.Result, bool, error) {
	priority, err := r.priority(ctx, s.b)
	switch {
	case errors.Is(err, errNoPriorityClass):
		priority = s.run.Batch.Priority // admitted: it keeps the priority it was admitted with
	case err != nil:
		return ctrl.Result{}, true, err
	}
	s.priority = priority
	if s.d == nil {
		// Ready, but its dispatcher is still starting (a manager that just
		// started or took the lease): not news, only a short wait.
		return ctrl.Result{RequeueAfter: waitForProvider}, true, nil
	}
	return ctrl.Result{}, false, nil
}

// admitted: a batch not yet in the provider's dispatcher is admitted (its
// input read, its run launched); every pass then shows it admitted and
// gives the dispatcher the fields a running batch takes at once.
func (r *InferenceBatchReconciler) admitted(ctx context.Context, s *batchScope) (ctrl.Result, bool, error) {
	b := s.b
	if !s.inDispatcher {
		prev := s.run
		r.Runtime.Stop(s.key) // the provider's dispatcher was replaced: admit again, keeping results
		run, err := r.admit(ctx, b, &s.provider, s.d, prev, s.priority)
		if err != nil {
			res, err := r.admitFailed(b, err, s.now)
			return res, true, err
		}
		s.run = run
		r.tellAdmitted(b, run, s.provider.Name)
	}
	// Shown admitted on every pass, not only the one that admitted: when
	// that pass's status write failed (a Conflict), the batch is already in
	// its dispatcher, and this pass writes what that one could not.
	if b.Status.StartTime == nil {
		b.Status.StartTime = &metav1.Time{Time: s.now}
	}
	setCondition(&b.Status.Conditions, metav1.Condition{Type: llmv1.ConditionAdmitted, Status: metav1.ConditionTrue, Reason: llmv1.ReasonAdmitted,
		Message: admittedMessage(b, s.run, s.provider.Name)}, b.Generation, s.now)
	s.d.Adjust(s.key.String(), b.Spec.Suspend, s.priority)
	return ctrl.Result{}, false, nil
}

// admitFailed is the outcome of an admission that failed: what the user
// can fix becomes a condition, checked again later; the rest is an error.
func (r *InferenceBatchReconciler) admitFailed(b *llmv1.InferenceBatch, err error, now time.Time) (ctrl.Result, error) {
	if errors.Is(err, errStopping) {
		return ctrl.Result{}, nil
	}
	for kind, reason := range map[error]string{errInvalidItems: llmv1.ReasonInvalidItems, errOutput: llmv1.ReasonOutputUnavailable,
		egress.ErrRefused: llmv1.ReasonEndpointNotAllowed} {
		if errors.Is(err, kind) {
			r.transition(b, reason, err.Error(), now)
			return ctrl.Result{RequeueAfter: cmp.Or(r.RecheckItems, recheckItems)}, nil
		}
	}
	return ctrl.Result{}, err
}

// tellAdmitted records the Events of an admission: one that ends a wait
// (whose start had a Warning), and a warning for results too many for
// ConfigMaps. An admission at once is told by the condition alone, since
// an Event for every batch is one more API write per batch.
func (r *InferenceBatchReconciler) tellAdmitted(b *llmv1.InferenceBatch, run *batchrun.Run, provider string) {
	if meta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionAdmitted) {
		return
	}
	if meta.IsStatusConditionFalse(b.Status.Conditions, llmv1.ConditionAdmitted) {
		r.Recorder.Eventf(b, nil, corev1.EventTypeNormal, llmv1.ReasonAdmitted, "Admit", "%s", admittedMessage(b, run, provider))
	}
	if b.Spec.Output.Kind != llmv1.OutputS3 && run.Total > results.ConfigMapItemsAdvised {
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, llmv1.ReasonLargeResultsInEtcd, "Admit",
			"%d results will be stored in ConfigMaps, in etcd; above %d items, write them to object storage (spec.output.kind: S3)",
			run.Total, results.ConfigMapItemsAdvised)
	}
}

// progressed: the run's progress is published; a run that is complete is
// stopped and its outcome told; a deadline wakes the batch when it passes.
func (r *InferenceBatchReconciler) progressed(ctx context.Context, s *batchScope) (ctrl.Result, bool, error) {
	b := s.b
	if r.observe(b, &s.provider, s.run, s.d, s.now) {
		r.Runtime.Stop(s.key)
		b.Status.CompletionTime = &metav1.Time{Time: s.now}
		outcome := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionFinished)
		eventType := corev1.EventTypeNormal
		if outcome.Reason != llmv1.ReasonSucceeded {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(b, nil, eventType, outcome.Reason, "Finish", "%s", outcome.Message)
		logf.FromContext(ctx).Info("Batch complete", "succeeded", b.Status.Counts.Succeeded, "failed", b.Status.Counts.Failed,
			"cached", b.Status.Counts.Cached, "filtered", b.Status.Counts.Filtered)
		res, err := r.expire(ctx, b, s.now)
		return res, true, err
	}
	if deadline, ok := deadlineOf(b); ok {
		return ctrl.Result{RequeueAfter: deadline.Sub(s.now)}, true, nil
	}
	return ctrl.Result{}, true, nil // the run tells when there is news
}
