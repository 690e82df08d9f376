package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/batchrun"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/egress"
	"github.com/llmquota/llmquota/internal/results"
)

// providerRefIndex indexes batches by the provider they name.
const providerRefIndex = "spec.providerRef.name"

// priorityClassIndex indexes batches by spec.priorityClassName.
const priorityClassIndex = "spec.priorityClassName"

// Intervals. A running batch's status is written when its dispatcher or
// result writer tells of news, at most once per statusInterval, whatever
// the item rate: that bounds status writes.
const (
	statusInterval  = time.Second
	waitForProvider = 5 * time.Second
	recheckItems    = 30 * time.Second
	// conflictRetry is how long a status write refused as computed from
	// an older copy waits for the cache to catch up (status changes do
	// not wake the reconciler).
	conflictRetry = 100 * time.Millisecond
)

// InferenceBatchReconciler admits batches to their provider's dispatcher
// and publishes their progress.
type InferenceBatchReconciler struct {
	client.Client
	// APIReader reads ConfigMaps uncached (items and results).
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.Clock
	Registry  *dispatch.Registry
	// Runtime runs the admitted batches and tells of their news.
	Runtime *batchrun.Runtime
	// RecheckItems is how often a batch with invalid items reads them
	// again (ConfigMaps are not watched); 0 means 30s.
	RecheckItems time.Duration
	// Workers is how many batches are reconciled at once; 0 means 1.
	Workers int
	// HoldInputBytes is the largest object-storage input held whole;
	// larger ones are streamed as the batch runs. 0 means HoldInputBytes.
	HoldInputBytes int64
	// Egress is what object storage endpoints batches may name (the
	// manager's --s3-allowed-endpoints); nil allows public addresses only.
	Egress *egress.Policy
}

var _ reconcile.Reconciler = (*InferenceBatchReconciler)(nil)

// +kubebuilder:rbac:groups=llmquota.dev,resources=inferencebatches,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=llmquota.dev,resources=inferencebatches/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update

// Reconcile runs the batch's phases and writes its status once, if it changed.
func (r *InferenceBatchReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var b llmv1.InferenceBatch
	if err := r.Get(ctx, req.NamespacedName, &b); err != nil {
		if apierrors.IsNotFound(err) {
			r.Runtime.Stop(req.NamespacedName) // deleted: stop its work, release its quota claim
			forgetBatchMetrics(req.Namespace, req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return r.sync(ctx, &b)
}

// sync runs the batch's phases and writes its status once, if it changed.
// It is the one writer of a batch's status: the queue runs one reconcile of
// a batch at a time.
func (r *InferenceBatchReconciler) sync(ctx context.Context, b *llmv1.InferenceBatch) (ctrl.Result, error) {
	orig := b.DeepCopy()
	result, err := r.reconcileBatch(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	b.Status.ObservedGeneration = b.Generation
	publishBatchMetrics(b)
	if equality.Semantic.DeepEqual(orig.Status, b.Status) {
		return result, nil
	}
	if run := r.Runtime.Get(client.ObjectKeyFromObject(b)); run != nil {
		if wait := run.Throttle(r.Clock.Now(), statusInterval); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, nil // written at most once per statusInterval
		}
	}
	waited, admitted := admissionWait(orig, b)
	if err := r.writeStatus(ctx, b); err != nil {
		if apierrors.IsConflict(err) {
			// Computed from a copy older than the stored batch (the cache
			// had not caught up, or the spec changed meanwhile): the cache
			// will catch up; compute it again then.
			return ctrl.Result{RequeueAfter: conflictRetry}, nil
		}
		return ctrl.Result{}, err
	}
	if admitted { // once written: a failed write is retried, not counted twice
		observeAdmission(string(b.Spec.ProviderRef.Name), waited)
	}
	return result, nil
}

// observe publishes the run's progress and reports whether it is complete.
func (r *InferenceBatchReconciler) observe(b *llmv1.InferenceBatch, p *llmv1.LLMProvider, run *batchrun.Run, d *dispatch.Dispatcher, now time.Time) bool {
	progress, _ := d.Progress(client.ObjectKeyFromObject(b).String())
	stored := run.Store.Counts()
	waiting, _ := run.Store.Pending()
	remaining := run.Kept - int(stored[results.Succeeded]+stored[results.Failed]+stored[results.Cached])
	interval := llmv1.Milliseconds(p.Spec.Limits.MinIntervalMilliseconds, 0)
	o := observation{
		total: run.Total, kept: run.Kept, filtered: run.Filtered, stored: stored, finishes: run.Store.Finishes(), usage: run.Store.Usage(), progress: progress, refs: run.Store.References(), waiting: waiting,
		writeErr: run.WriteError(), readErr: run.ReadError(),
		eta: dispatch.ETA(now, remaining, d.Quota(), interval, int(b.Spec.BatchSize), llmv1.Milliseconds(b.Spec.BatchDelayMilliseconds, 0)),
	}
	wasLimited := meta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionRateLimited)
	complete := setProgress(b, o, now)
	c := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionRateLimited)
	switch {
	case wasLimited || c.Status != metav1.ConditionTrue:
	case c.Reason == llmv1.ReasonMinuteWindowFull || c.Reason == llmv1.ReasonHourWindowFull || c.Reason == llmv1.ReasonDayWindowFull:
		r.Recorder.Eventf(b, nil, corev1.EventTypeNormal, c.Reason, "Dispatch", "held back by LLMProvider %s: %s", p.Name, c.Message)
	case c.Reason == llmv1.ReasonNamespaceDailyBudgetExhausted || c.Reason == llmv1.ReasonNamespaceMonthlyBudgetExhausted:
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, c.Reason, "Dispatch", "held back by LLMProvider %s: %s", p.Name, c.Message)
	}
	return complete
}

// transition records a batch that cannot run, with an Event when the reason is new.
func (r *InferenceBatchReconciler) transition(b *llmv1.InferenceBatch, reason, message string, now time.Time) {
	oldReason := ""
	if old := meta.FindStatusCondition(b.Status.Conditions, llmv1.ConditionAdmitted); old != nil {
		oldReason = old.Reason // copied: waiting rewrites the condition in place
	}
	waiting(b, reason, message, now)
	if oldReason != reason {
		r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, reason, "Admit", "%s", message)
	}
}

// failDeadline stops the batch at its activeDeadlineSeconds, keeping the
// results written so far.
func (r *InferenceBatchReconciler) failDeadline(ctx context.Context, b *llmv1.InferenceBatch, now time.Time) (ctrl.Result, error) {
	if err := r.stopRun(ctx, b, client.ObjectKeyFromObject(b), now); err != nil {
		return ctrl.Result{}, err
	}
	msg := fmt.Sprintf("activeDeadlineSeconds (%ds) passed; %d items have results", *b.Spec.ActiveDeadlineSeconds,
		b.Status.Counts.Succeeded+b.Status.Counts.Failed+b.Status.Counts.Cached)
	finish(b, false, llmv1.ReasonDeadlineExceeded, msg, now)
	b.Status.CompletionTime = &metav1.Time{Time: now}
	b.Status.EstimatedCompletionTime = nil
	r.Recorder.Eventf(b, nil, corev1.EventTypeWarning, llmv1.ReasonDeadlineExceeded, "Fail", "%s", msg)
	return r.expire(ctx, b, now)
}

// expire deletes a finished batch once ttlSecondsAfterFinished has passed.
func (r *InferenceBatchReconciler) expire(ctx context.Context, b *llmv1.InferenceBatch, now time.Time) (ctrl.Result, error) {
	if b.Spec.TTLSecondsAfterFinished == nil || b.Status.CompletionTime == nil {
		return ctrl.Result{}, nil
	}
	at := b.Status.CompletionTime.Add(time.Duration(*b.Spec.TTLSecondsAfterFinished) * time.Second)
	if now.Before(at) {
		return ctrl.Result{RequeueAfter: at.Sub(now)}, nil
	}
	logf.FromContext(ctx).Info("Deleting finished batch after its TTL")
	return ctrl.Result{}, client.IgnoreNotFound(r.Delete(ctx, b, client.PropagationPolicy(metav1.DeletePropagationBackground)))
}

// finished says whether the batch reached its terminal outcome.
func finished(b *llmv1.InferenceBatch) bool {
	return meta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionFinished)
}

func deadlineOf(b *llmv1.InferenceBatch) (time.Time, bool) {
	if b.Spec.ActiveDeadlineSeconds == nil || b.Status.StartTime == nil {
		return time.Time{}, false
	}
	return b.Status.StartTime.Add(time.Duration(*b.Spec.ActiveDeadlineSeconds) * time.Second), true
}

// SetupWithManager registers the reconciler. Batches are woken by their
// own spec changes, by changes of the provider they name, and by news from
// their runs (typed events on a channel source, as Kueue feeds its
// ClusterQueue reconciler), so status writes do not wake the reconciler
// and nothing is polled.
func (r *InferenceBatchReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &llmv1.InferenceBatch{}, providerRefIndex,
		func(o client.Object) []string {
			return []string{string(o.(*llmv1.InferenceBatch).Spec.ProviderRef.Name)}
		}); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &llmv1.InferenceBatch{}, priorityClassIndex,
		func(o client.Object) []string {
			if name := o.(*llmv1.InferenceBatch).Spec.PriorityClassName; name != "" {
				return []string{string(name)}
			}
			return nil
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&llmv1.InferenceBatch{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&llmv1.LLMProvider{}, handler.EnqueueRequestsFromMapFunc(r.batchesOf),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&llmv1.InferencePriorityClass{}, handler.EnqueueRequestsFromMapFunc(r.batchesOfClass)).
		// Namespaces by their metadata alone: labels are all a selector reads.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.batchesIn),
			builder.WithPredicates(predicate.LabelChangedPredicate{}), builder.OnlyMetadata).
		WatchesRawSource(source.TypedChannel(r.Runtime.News(), newsHandler())).
		WithOptions(controller.Options{MaxConcurrentReconciles: max(1, r.Workers)}).
		Named("inferencebatch").
		Complete(r)
}

// storedPriority queues the news that a batch's results were stored ahead
// of admissions and spec changes (priority 0): showing stored results is
// one status write, and behind a burst of admissions the status would
// trail its results by the whole queue (seconds). A batch's writes are
// few (one per flush: 100 results or 10 s), so admissions lose little.
// The news that every result is stored goes first of all: it finishes
// the batch.
const (
	storedPriority = 1
	endPriority    = 2
)

// newsHandler queues a batch with news from its run by what the news is:
// its end first, then its stored results, then admissions and spec changes
// (controller-runtime's priority queue, on by default, queues those at 0),
// and progress refreshes (a quota hold began or ended) last, so a batch
// waiting for admission never waits behind them.
func newsHandler() handler.TypedEventHandler[batchrun.News, reconcile.Request] {
	priority := map[batchrun.NewsKind]int{batchrun.Final: endPriority, batchrun.Stored: storedPriority, batchrun.Progress: handler.LowPriority}
	return handler.TypedFuncs[batchrun.News, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[batchrun.News], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			req := reconcile.Request{NamespacedName: e.Object.Key}
			if pq, ok := q.(priorityqueue.PriorityQueue[reconcile.Request]); ok {
				p := priority[e.Object.Kind]
				pq.AddWithOpts(priorityqueue.AddOpts{Priority: &p}, req)
				return
			}
			q.Add(req)
		},
	}
}

// batchesOf wakes the batches of a provider whose spec changed.
func (r *InferenceBatchReconciler) batchesOf(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requests(ctx, client.MatchingFields{providerRefIndex: o.GetName()})
}

// batchesOfClass wakes the batches of a priority class that appeared,
// changed or went.
func (r *InferenceBatchReconciler) batchesOfClass(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requests(ctx, client.MatchingFields{priorityClassIndex: o.GetName()})
}

// batchesIn wakes the batches of a namespace whose labels changed: a
// provider's namespaceSelector may select it now, or no longer.
func (r *InferenceBatchReconciler) batchesIn(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requests(ctx, client.InNamespace(o.GetName()))
}

func (r *InferenceBatchReconciler) requests(ctx context.Context, opts ...client.ListOption) []reconcile.Request {
	var list llmv1.InferenceBatchList
	if err := r.List(ctx, &list, opts...); err != nil {
		logf.FromContext(ctx).Error(err, "Listing batches to wake")
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, b := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&b)}
	}
	return reqs
}
