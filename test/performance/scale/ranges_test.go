package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRangesCheckTheFiguresOfTheirSink: a run's figures inside the
// committed ranges pass; each figure pushed outside its range fails the run
// with its name; a range of another sink, a larger size or another
// concurrency is not applied.
func TestRangesCheckTheFiguresOfTheirSink(t *testing.T) {
	c := config{ranges: "ranges.yaml", concurrency: 256, latency: 200 * time.Millisecond}
	good := figures{batches: 1000, items: 100_000, elapsed: 81 * time.Second, peakRSS: 150 << 20,
		writesPerItem: 0.041, etcdGrowth: 82 << 20, resultBytes: 26 << 20, resultsInEtcd: true}
	if err := checkRanges(c, good); err != nil {
		t.Fatalf("the measured figures fail their ranges: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*figures)
		want   string
	}{
		{"writes", func(f *figures) { f.writesPerItem = 0.06 }, "API writes per item"},
		{"memory", func(f *figures) { f.peakRSS = 230 << 20 }, "manager peak RSS"},
		{"etcd", func(f *figures) { f.etcdGrowth = 100 << 20 }, "etcd growth per result byte"},
		{"throughput", func(f *figures) { f.elapsed = 120 * time.Second }, "items per second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			tc.change(&f)
			err := checkRanges(c, f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
	small := good
	small.batches, small.etcdGrowth = 300, 200<<20 // only the 1,000-batch entry bounds etcd
	if err := checkRanges(c, small); err != nil {
		t.Fatalf("a 300-batch run was held to the 1,000-batch ranges: %v", err)
	}
	long := config{ranges: "ranges.yaml", concurrency: 64, latency: 200 * time.Millisecond}
	longFigures := good
	longFigures.elapsed, longFigures.writesPerItem, longFigures.etcdGrowth = 317*time.Second, 0.100, 139<<20
	if err := checkRanges(long, longFigures); err != nil {
		t.Fatalf("a long-batch run (concurrency 64) was held to the short batches' ranges: %v", err)
	}
	longFigures.etcdGrowth = 193 << 20 // a flush rewriting its shard
	if err := checkRanges(long, longFigures); err == nil || !strings.Contains(err.Error(), "etcd growth per result byte") {
		t.Fatalf("a long-batch run with the rewritten shards' etcd growth: %v, want its bound", err)
	}
	saturated := config{ranges: "ranges.yaml", concurrency: 64, latency: 200 * time.Millisecond, rpm: 1200}
	satFigures := figures{batches: 100, items: 3000, elapsed: 123 * time.Second, peakRSS: 75 << 20, writesPerItem: 0.358,
		etcdGrowth: 7 << 20, resultBytes: 1 << 20, resultsInEtcd: true}
	if err := checkRanges(saturated, satFigures); err != nil {
		t.Fatalf("a run on a saturated provider was held to the ranges of runs whose window never fills: %v", err)
	}
	satFigures.writesPerItem = 0.743 // every waiting batch told of every hold
	if err := checkRanges(saturated, satFigures); err == nil || !strings.Contains(err.Error(), "API writes per item") {
		t.Fatalf("a saturated run with a status write per hold: %v, want its bound", err)
	}
	s3 := config{ranges: "ranges.yaml", concurrency: 256, latency: 200 * time.Millisecond, s3: true}
	if err := checkRanges(s3, good); err == nil || !strings.Contains(err.Error(), "API writes per item") {
		t.Fatalf("S3 run with 0.041 writes per item: %v, want the S3 bound of 0.035", err)
	}
}

// TestRangesFileRefusesUnknownBounds: a misspelt bound is an error, not a
// bound silently not checked.
func TestRangesFileRefusesUnknownBounds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ranges.yaml")
	if err := os.WriteFile(path, []byte("- sink: ConfigMap\n  maxWritesPerltem: 0.05\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := checkRanges(config{ranges: path}, figures{batches: 1, items: 1, elapsed: time.Second})
	if err == nil || !strings.Contains(err.Error(), "maxWritesPerltem") {
		t.Fatalf("error %v, want one naming the unknown field", err)
	}
}
