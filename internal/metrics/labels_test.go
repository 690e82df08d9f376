package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestNoLabelAScrapeRenames(t *testing.T) {
	clashes, err := LabelClashes(All...)
	if err != nil {
		t.Fatal(err)
	}
	if len(clashes) > 0 {
		t.Fatalf("labels a ServiceMonitor renames exported_*: %v", clashes)
	}
}

func TestLabelClashesFindsThem(t *testing.T) {
	bad := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x_items", Help: "x"}, []string{"namespace", "batch"})
	clashes, err := LabelClashes(bad)
	if err != nil || len(clashes) != 1 || !strings.HasSuffix(clashes[0], ": namespace") {
		t.Fatalf("LabelClashes = %v, %v; want the namespace label", clashes, err)
	}
}
