package reconciler

import (
	"testing"

	"github.com/llmquota/llmquota/internal/metrics"
)

func TestNoLabelAScrapeRenames(t *testing.T) {
	clashes, err := metrics.LabelClashes(agentMetrics...)
	if err != nil {
		t.Fatal(err)
	}
	if len(clashes) > 0 {
		t.Fatalf("labels a PodMonitor renames exported_*: %v", clashes)
	}
}
