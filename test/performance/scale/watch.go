package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/journal"
	"github.com/llmquota/llmquota/internal/results"
)

// watcher follows batches and result shards as a user's watch would.
type watcher struct {
	mu        sync.Mutex
	createdAt map[string]time.Time
	admitted  map[string]time.Duration
	// delivered[batch]: how long after its create returned the watch first
	// showed the batch: the API server's watch delivery, which the
	// manager's informer waits for as well before it can admit.
	delivered map[string]time.Duration
	complete  map[string]bool
	// storedAt[batch][n]: when the shards first held n results; lag is how
	// long after that the batch's status first showed n done.
	storedAt map[string]map[int]time.Time
	lags     []lagSample
	changed  chan struct{}
	// want is how many batches will be created; allAdmitted is closed
	// when the watch has seen that many admitted.
	want        int
	allAdmitted chan struct{}
	// writes and bytes count the objects each watch saw written (every
	// create and update is one event carrying the object as stored).
	writes, bytes map[string]int64
}

func newWatcher(want int) *watcher {
	return &watcher{createdAt: map[string]time.Time{}, admitted: map[string]time.Duration{}, delivered: map[string]time.Duration{}, complete: map[string]bool{},
		storedAt: map[string]map[int]time.Time{}, changed: make(chan struct{}, 1), writes: map[string]int64{}, bytes: map[string]int64{},
		want: want, allAdmitted: make(chan struct{})}
}

// saw counts one write of kind, n bytes as stored (JSON).
func (w *watcher) saw(kind string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes[kind]++
	w.bytes[kind] += int64(n)
}

// written says what the watches saw written, by kind.
func (w *watcher) written() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var parts []string
	for _, kind := range []string{"InferenceBatch", "result ConfigMap", "journal ConfigMap"} {
		parts = append(parts, fmt.Sprintf("%s %d writes, %.1f MiB", kind, w.writes[kind], float64(w.bytes[kind])/(1<<20)))
	}
	return strings.Join(parts, "; ")
}

func (w *watcher) created(key string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.createdAt[key] = at
}

// batchStatus is the part of an InferenceBatch the watcher reads: decoding
// only it keeps the watcher from falling behind its watch (the API server
// closes a watch whose reader is too slow, and a new watch sends every
// object again).
type batchStatus struct {
	Metadata struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions"`
		Counts     llmv1.ItemCounts   `json:"counts"`
	} `json:"status"`
}

func (w *watcher) batches(ctx context.Context, cfg *rest.Config) {
	watchLoop(ctx, cfg, "/apis/"+llmv1.GroupVersion.String()+"/inferencebatches", "", func(raw json.RawMessage) string {
		var b batchStatus
		if json.Unmarshal(raw, &b) != nil {
			return ""
		}
		w.saw("InferenceBatch", len(raw))
		now, key := time.Now(), b.Metadata.Namespace+"/"+b.Metadata.Name
		w.mu.Lock()
		defer w.mu.Unlock()
		if _, seen := w.delivered[key]; !seen {
			var d time.Duration // 0: the watch was faster than the create's answer
			if at, ok := w.createdAt[key]; ok {
				d = now.Sub(at)
			}
			w.delivered[key] = d
		}
		if _, seen := w.admitted[key]; !seen && meta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionAdmitted) {
			at, ok := w.createdAt[key]
			if !ok { // the watch was faster than the create's answer
				at = now
			}
			w.admitted[key] = now.Sub(at)
			if len(w.admitted) == w.want {
				close(w.allAdmitted)
			}
		}
		c := b.Status.Counts
		done := int(c.Succeeded + c.Failed + c.Cached + c.Filtered)
		for n, at := range w.storedAt[key] {
			if n <= done {
				w.lags = append(w.lags, lagSample{key: key, results: n, storedAt: at, lag: now.Sub(at)})
				delete(w.storedAt[key], n)
			}
		}
		if meta.IsStatusConditionTrue(b.Status.Conditions, llmv1.ConditionFinished) && !w.complete[key] {
			w.complete[key] = true
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
		return b.Metadata.ResourceVersion
	})
}

// journal counts the writes of the providers' results journals.
func (w *watcher) journal(ctx context.Context, cfg *rest.Config) {
	watchLoop(ctx, cfg, "/api/v1/configmaps", journal.LabelJournal, func(raw json.RawMessage) string {
		var m metav1.PartialObjectMetadata
		if json.Unmarshal(raw, &m) != nil {
			return ""
		}
		w.saw("journal ConfigMap", len(raw))
		return m.ResourceVersion
	})
}

func (w *watcher) shards(ctx context.Context, cfg *rest.Config) {
	counts := map[string]map[string]int{} // batch -> shard -> results
	watchLoop(ctx, cfg, "/api/v1/configmaps", results.LabelResults+"=true", func(raw json.RawMessage) string {
		var cm corev1.ConfigMap
		if json.Unmarshal(raw, &cm) != nil {
			return ""
		}
		w.saw("result ConfigMap", len(raw))
		now := time.Now()
		key := cm.Namespace + "/" + cm.Labels[results.LabelBatch]
		if counts[key] == nil {
			counts[key] = map[string]int{}
		}
		counts[key][cm.Name] = strings.Count(cm.Data[results.DataKey], "\n")
		total := 0
		for _, n := range counts[key] {
			total += n
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.storedAt[key] == nil {
			w.storedAt[key] = map[int]time.Time{}
		}
		if _, ok := w.storedAt[key][total]; !ok && !w.complete[key] {
			w.storedAt[key][total] = now
		}
		return cm.ResourceVersion
	})
}

// watchEvent is one event of a watch stream.
type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// watchLoop watches path (a cluster-wide list) with labelSelector, calling
// on for each object added or modified; on decodes the object it needs and
// returns its resourceVersion (one decoding per event). When the server
// ends the watch it resumes from the last resourceVersion seen, so nothing
// is sent twice; a resourceVersion too old to resume from starts over.
func watchLoop(ctx context.Context, cfg *rest.Config, path, labelSelector string, on func(json.RawMessage) string) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench-scale: watching %s: %v\n", path, err)
		return
	}
	rv := ""
	for ctx.Err() == nil {
		next, err := watchOnce(ctx, hc, strings.TrimSuffix(cfg.Host, "/")+path, labelSelector, rv, on)
		rv = next
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// watchOnce reads one watch until it ends and returns the resourceVersion
// to resume from.
func watchOnce(ctx context.Context, hc *http.Client, base, labelSelector, rv string, on func(json.RawMessage) string) (string, error) {
	q := url.Values{"watch": {"true"}, "allowWatchBookmarks": {"true"}}
	if rv != "" {
		q.Set("resourceVersion", rv)
	}
	if labelSelector != "" {
		q.Set("labelSelector", labelSelector)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"?"+q.Encode(), nil)
	if err != nil {
		return rv, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return rv, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return rv, fmt.Errorf("watch %s: %s", base, resp.Status)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev watchEvent
		if err := dec.Decode(&ev); err != nil {
			return rv, err
		}
		next := ""
		switch ev.Type {
		case "ADDED", "MODIFIED":
			next = on(ev.Object)
		default: // BOOKMARK, DELETED, ERROR: metadata, or a Status with a code
			var m struct {
				Metadata struct {
					ResourceVersion string `json:"resourceVersion"`
				} `json:"metadata"`
				Code int `json:"code"`
			}
			_ = json.Unmarshal(ev.Object, &m)
			if ev.Type == "ERROR" {
				if m.Code == http.StatusGone {
					return "", errors.New("resourceVersion too old: watching from the start")
				}
				return rv, fmt.Errorf("watch %s: error event %s", base, ev.Object)
			}
			next = m.Metadata.ResourceVersion
		}
		if next != "" {
			rv = next
		}
	}
}

func (w *watcher) waitComplete(ctx context.Context, n int) error {
	for {
		w.mu.Lock()
		done := len(w.complete)
		w.mu.Unlock()
		if done >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("timed out: " + strconv.Itoa(done) + " of " + strconv.Itoa(n) + " batches Complete")
		case <-w.changed:
		case <-time.After(time.Second):
		}
	}
}

func (w *watcher) admission(q float64) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return quantile(w.admitted, q)
}

func (w *watcher) delivery(q float64) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return quantile(w.delivered, q)
}

// quantile is the q quantile of m's durations; 0 when m is empty.
func quantile(m map[string]time.Duration, q float64) time.Duration {
	if len(m) == 0 {
		return 0
	}
	ds := slices.Sorted(maps.Values(m))
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// lagSample is one status write catching up with stored results.
type lagSample struct {
	key      string
	results  int
	storedAt time.Time
	lag      time.Duration
}

func (w *watcher) maxLag() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var most time.Duration
	for _, l := range w.lags {
		most = max(most, l.lag)
	}
	return most
}

// lagSummary describes the status lags for stderr: how they spread, how
// many passed the 2 s, and the worst, with when its results were
// stored (since start), to find it in the manager's log.
func (w *watcher) lagSummary(start time.Time) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lags) == 0 {
		return "none measured"
	}
	ls := slices.Clone(w.lags)
	slices.SortFunc(ls, func(a, b lagSample) int { return cmp.Compare(a.lag, b.lag) })
	over := 0
	for _, l := range ls {
		if l.lag > 2*time.Second {
			over++
		}
	}
	at := func(q float64) time.Duration {
		return ls[min(len(ls)-1, int(q*float64(len(ls))))].lag.Round(time.Millisecond)
	}
	worst := ls[len(ls)-1]
	return fmt.Sprintf("%d status writes catching up with results: p50 %s, p99 %s, max %s; %d over 2 s; the worst: %s, %d results stored at +%.1f s",
		len(ls), at(0.5), at(0.99), worst.lag.Round(time.Millisecond), over, worst.key, worst.results, worst.storedAt.Sub(start).Seconds())
}
