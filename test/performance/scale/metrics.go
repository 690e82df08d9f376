package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// etcdSize reads etcd's database size from its metrics.
func etcdSize(env *envtest.Environment) (int64, error) {
	text, err := fetchMetrics(env.ControlPlane.Etcd.URL.String() + "/metrics")
	if err != nil {
		return 0, err
	}
	v, err := sample(text, "etcd_mvcc_db_total_size_in_bytes", nil)
	return int64(v), err
}

// etcdLive compacts etcd's history up to its current revision, as the API
// server does every five minutes (--etcd-compaction-interval), then
// defragments it, and returns its database's size: the objects as they
// are, without the older revisions that the etcd growth column counts (a
// compaction alone frees few pages: older revisions share pages with live
// ones).
func etcdLive(env *envtest.Environment) (int64, error) {
	base := env.ControlPlane.Etcd.URL.String()
	var head struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := postJSON(base+"/v3/kv/range", map[string]any{"key": "AA==", "count_only": true}, &head); err != nil {
		return 0, err
	}
	if err := postJSON(base+"/v3/kv/compaction", map[string]any{"revision": head.Header.Revision, "physical": true}, nil); err != nil {
		return 0, err
	}
	if err := postJSON(base+"/v3/maintenance/defragment", map[string]any{}, nil); err != nil {
		return 0, err
	}
	return etcdSize(env)
}

// postJSON posts body to etcd's JSON gateway and decodes the answer into out (nil: none).
func postJSON(url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b)) //nolint:gosec,noctx // a loopback URL of a process this command started
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, answer)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(answer, out)
}

// writeMethods are the HTTP methods that write to the API server.
var writeMethods = []string{"POST", "PUT", "PATCH", "DELETE"}

// managerWrites counts the manager's writes to the API server by method.
func managerWrites(port int) (map[string]int64, error) {
	text, err := fetchMetrics(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, m := range writeMethods {
		v, err := sample(text, "rest_client_requests_total", func(labels string) bool {
			return strings.Contains(labels, `method="`+m+`"`)
		})
		if err != nil {
			return nil, err
		}
		out[m] = int64(v)
	}
	return out, nil
}

// batchQueue says how long InferenceBatch reconciles waited in the
// manager's queue and ran, on average, from its controller-runtime
// metrics (text, as /metrics serves them): where an admission's latency
// goes inside the manager.
func batchQueue(text string) string {
	avg := func(metric, label string) string {
		match := func(labels string) bool { return strings.Contains(labels, label+`="inferencebatch"`) }
		sum, err1 := sample(text, metric+"_sum", match)
		n, err2 := sample(text, metric+"_count", match)
		if err := errors.Join(err1, err2); err != nil || n == 0 {
			return "unknown"
		}
		return fmt.Sprintf("%.0f ms over %.0f", 1000*sum/n, n)
	}
	return "queue wait " + avg("workqueue_queue_duration_seconds", "name") + ", reconcile " + avg("controller_runtime_reconcile_time_seconds", "controller")
}

// admissionWait summarises the manager's own llmquota_batch_admission_wait_seconds:
// creation to the status write that admits, so what the watch adds on top
// is the API server delivering that write (an older build has no such
// metric: "unknown"); text is the manager's /metrics.
func admissionWait(text string) string {
	const metric = "llmquota_batch_admission_wait_seconds"
	sum, err1 := sample(text, metric+"_sum", nil)
	n, err2 := sample(text, metric+"_count", nil)
	within := func(le string) float64 {
		v, _ := sample(text, metric+"_bucket", func(labels string) bool { return strings.Contains(labels, `le="`+le+`"`) })
		return 100 * v / n
	}
	if errors.Join(err1, err2) != nil || n == 0 {
		return "unknown"
	}
	return fmt.Sprintf("mean %.2f s over %.0f, %.0f%% within 1 s, %.0f%% within 5 s (creationTimestamp has whole seconds: each reads up to 1 s long)",
		sum/n, n, within("1"), within("5"))
}

// delta formats the writes made between two readings and returns their sum.
func delta(before, after map[string]int64) (string, int64) {
	var parts []string
	var sum int64
	for _, m := range writeMethods {
		if d := after[m] - before[m]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", m, d))
			sum += d
		}
	}
	return strings.Join(parts, ", "), sum
}

// fetchMetrics reads a process's metrics in Prometheus text format.
func fetchMetrics(url string) (string, error) {
	resp, err := http.Get(url) //nolint:gosec,noctx // a loopback URL of a process this command started
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// sample sums the samples of metric in text whose labels match (nil: all).
func sample(text, metric string, match func(labels string) bool) (float64, error) {
	var sum float64
	found := false
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, metric) || (len(line) > len(metric) && line[len(metric)] != '{' && line[len(metric)] != ' ') {
			continue
		}
		labels, value, _ := strings.Cut(line[len(metric):], " ")
		if match != nil && !match(labels) {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return 0, err
		}
		sum += v
		found = true
	}
	if !found && match == nil {
		return 0, fmt.Errorf("%s not found", metric)
	}
	return sum, nil
}
