package metrics

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// TargetLabels are the labels a scrape puts on every series of a target:
// Prometheus's job and instance, and what the Prometheus Operator's
// ServiceMonitors and PodMonitors add. A metric's own label of one of
// these names is renamed exported_<name> at scrape (honorLabels is off by
// default), so a dashboard reading it reads the manager's pod instead.
var TargetLabels = []string{"job", "instance", "namespace", "pod", "container", "service", "endpoint"}

// variableLabels reads a Desc's label names from its String form, the one
// place client_golang shows them.
var variableLabels = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)

// LabelClashes returns "<metric>: <label>" for every label of the
// collectors' metrics that a scrape would rename (TargetLabels).
func LabelClashes(cs ...prometheus.Collector) ([]string, error) {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	var clashes []string
	var err error
	for d := range ch {
		m := variableLabels.FindStringSubmatch(d.String())
		if m == nil {
			err = fmt.Errorf("no label names in %s", d)
			continue
		}
		for _, l := range strings.Split(m[1], ",") {
			if slices.Contains(TargetLabels, l) {
				clashes = append(clashes, fmt.Sprintf("%s: %s", d, l))
			}
		}
	}
	return clashes, err
}
