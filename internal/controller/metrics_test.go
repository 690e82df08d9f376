package controller

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/metrics"
)

// TestBatchFailedMetric: a batch whose Failed condition is True is marked
// with its reason (what the failed-batch alert reads); a batch that is not
// failed, or is gone, has no series.
func TestBatchFailedMetric(t *testing.T) {
	b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "metrics-failed"}}
	series := func() int { return testutil.CollectAndCount(metrics.BatchFailed) }
	before := series()
	publishBatchMetrics(b)
	if series() != before {
		t.Fatal("a running batch is marked failed")
	}
	b.Status.Conditions = []metav1.Condition{{Type: llmv1.ConditionFailed, Status: metav1.ConditionTrue, Reason: llmv1.ReasonItemsFailed}}
	publishBatchMetrics(b)
	if got := testutil.ToFloat64(metrics.BatchFailed.WithLabelValues("team-a", "metrics-failed", llmv1.ReasonItemsFailed)); got != 1 || series() != before+1 {
		t.Fatalf("failed batch: %v, %d series", got, series())
	}
	forgetBatchMetrics("team-a", "metrics-failed")
	if series() != before {
		t.Fatal("a deleted batch is still marked failed")
	}
}
