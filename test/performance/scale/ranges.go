package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// The sinks a run writes to, as ranges.yaml names them.
const (
	sinkConfigMap = "ConfigMap"
	sinkS3        = "S3"
	sinkS3Input   = "S3Input"
)

func sinkOf(c config) string {
	switch {
	case c.s3:
		return sinkS3
	case c.s3Input:
		return sinkS3Input
	}
	return sinkConfigMap
}

// figures are what one run measured.
type figures struct {
	batches, items int
	elapsed        time.Duration
	p50, p99       time.Duration
	peakRSS        int64
	cpu            time.Duration
	writesPerItem  float64
	byMethod       string
	etcdGrowth     int64
	resultBytes    int64
	// resultsInEtcd is true when the results are ConfigMaps, so etcd's
	// growth is theirs to answer for.
	resultsInEtcd bool
	lag           string
}

// row is the figures as a line of the table docs/benchmarks.md keeps.
func (f figures) row() string {
	return fmt.Sprintf("| %d | %d | %.1f s | %s / %s | %.0f | %.0f MiB | %.1f s | %.3f (%s) | %.1f MiB | %.1f MiB | %s |",
		f.batches, f.items, f.elapsed.Seconds(), f.p50.Round(time.Millisecond), f.p99.Round(time.Millisecond), float64(f.items)/f.elapsed.Seconds(),
		float64(f.peakRSS)/(1<<20), f.cpu.Seconds(), f.writesPerItem, f.byMethod,
		float64(f.etcdGrowth)/(1<<20), float64(f.resultBytes)/(1<<20), f.lag)
}

// rangeSpec is one entry of ranges.yaml: the bounds of a sink's key
// figures, for runs of at least minBatches batches at the provider
// concurrency given (0: any). A zero bound is not checked.
type rangeSpec struct {
	Sink       string `json:"sink"`
	MinBatches int    `json:"minBatches"`
	// Concurrency is the --concurrency the entry is for: how long a batch
	// runs, and so how often it writes, depends on it.
	Concurrency int `json:"concurrency"`
	// RPM is the --rpm the entry is for; without it, the entry is for runs
	// at the default, where the requests window never fills.
	RPM                        int     `json:"rpm"`
	MaxWritesPerItem           float64 `json:"maxWritesPerItem"`
	MaxPeakRSSMiB              float64 `json:"maxPeakRSSMiB"`
	MaxEtcdGrowthPerResultByte float64 `json:"maxEtcdGrowthPerResultByte"`
	// MinThroughputShare bounds items/s as a share of what the provider's
	// concurrency allows at the emulator's latency.
	MinThroughputShare float64 `json:"minThroughputShare"`
}

// checkRanges checks a run's figures against every entry of c.ranges that
// applies to it, and names each figure out of its range.
func checkRanges(c config, f figures) error {
	path, sink := c.ranges, sinkOf(c)
	if path == "" || c.baseline != "" { // an older build is measured to compare, not judged
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the ranges: %w", err)
	}
	var specs []rangeSpec
	if err := yaml.UnmarshalStrict(data, &specs); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	out := func(name string, got, bound float64, over bool) {
		if bound > 0 && (over && got > bound || !over && got < bound) {
			errs = append(errs, fmt.Errorf("%s %.3f outside its range (%s %.3f in %s)", name, got, map[bool]string{true: "at most", false: "at least"}[over], bound, path))
		}
	}
	for _, r := range specs {
		if r.Sink != sink || f.batches < r.MinBatches || r.Concurrency != 0 && r.Concurrency != c.concurrency || cmp.Or(r.RPM, defaultRPM) != cmp.Or(c.rpm, defaultRPM) {
			continue
		}
		out("API writes per item", f.writesPerItem, r.MaxWritesPerItem, true)
		out("manager peak RSS (MiB)", float64(f.peakRSS)/(1<<20), r.MaxPeakRSSMiB, true)
		possible := min(float64(c.concurrency)/c.latency.Seconds(), float64(cmp.Or(c.rpm, defaultRPM))/60)
		out("items per second as a share of concurrency/latency", float64(f.items)/f.elapsed.Seconds()/possible, r.MinThroughputShare, false)
		if f.resultsInEtcd && f.resultBytes > 0 {
			out("etcd growth per result byte", float64(f.etcdGrowth)/float64(f.resultBytes), r.MaxEtcdGrowthPerResultByte, true)
		}
	}
	return errors.Join(errs...)
}
