// Package results stores an InferenceBatch's item results as JSONL in
// ConfigMaps owned by the batch, sharded below the 1 MiB object limit. An
// item counts as done only once its result is written here; a restarted
// manager reads the shards back and sends only what has no result.
package results

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// Status of an item's result.
const (
	Succeeded = "succeeded"
	Failed    = "failed"
	Filtered  = "filtered"
	Cached    = "cached"
)

// Labels on result ConfigMaps.
const (
	// LabelBatch holds the owning batch's name.
	LabelBatch = "llmquota.dev/batch"
	// LabelResults marks a ConfigMap as holding results, for cache lookups.
	LabelResults = "llmquota.dev/results"
	// DataKey is the ConfigMap key holding the JSONL.
	DataKey = "results.jsonl"
)

// MaxShardBytes keeps each ConfigMap well under the 1 MiB object limit,
// leaving room for metadata.
const MaxShardBytes = 900 << 10

// maxOutputBytes caps one result's output text, so one item cannot fill a shard.
const maxOutputBytes = 64 << 10

// Result is one item's outcome, one JSON line in a shard.
type Result struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	Output     string `json:"output,omitempty"`
	Truncated  bool   `json:"truncated,omitempty"`
	TokensIn   int64  `json:"tokensIn,omitempty"`
	TokensOut  int64  `json:"tokensOut,omitempty"`
	Attempts   int    `json:"attempts,omitempty"`
	LatencyMs  int64  `json:"latencyMs,omitempty"`
	Provider   string `json:"provider,omitempty"`
	ErrorClass string `json:"errorClass,omitempty"`
	Error      string `json:"error,omitempty"`
	// CacheKey identifies model, parameters and prompt, for reuse.
	CacheKey string `json:"cacheKey,omitempty"`
}

type shard struct {
	name   string
	data   []byte
	count  int32
	rv     string // resourceVersion; empty until created
	exists bool
}

// Store is one batch's results. Add buffers; Flush writes. Safe for
// concurrent use.
type Store struct {
	c client.Client
	// owner is the batch's identity, copied: the caller keeps using its object.
	owner metav1.OwnerReference
	ns    string
	// shardBytes is MaxShardBytes; tests lower it to exercise sharding.
	shardBytes int

	mu        sync.Mutex
	shards    []*shard
	stored    map[string]Result // written to the API server
	pending   []Result          // added, not yet written
	pendingID map[string]bool   // ids in pending, for Has
}

// Load reads a batch's shards back with reader (uncached, so the manager
// keeps no ConfigMap informer) and returns a Store that writes with c.
// Shards of an earlier batch with the same name (another UID) are ignored.
func Load(ctx context.Context, reader client.Reader, c client.Client, batch *llmv1.InferenceBatch) (*Store, error) {
	var list corev1.ConfigMapList
	if err := reader.List(ctx, &list, client.InNamespace(batch.Namespace), client.MatchingLabels{LabelBatch: batch.Name}); err != nil {
		return nil, fmt.Errorf("listing result ConfigMaps: %w", err)
	}
	yes := true
	s := &Store{c: c, ns: batch.Namespace, shardBytes: MaxShardBytes, stored: map[string]Result{}, pendingID: map[string]bool{}, owner: metav1.OwnerReference{
		APIVersion: llmv1.GroupVersion.String(), Kind: "InferenceBatch", Name: batch.Name, UID: batch.UID,
		Controller: &yes, BlockOwnerDeletion: &yes,
	}}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	for i := range list.Items {
		cm := &list.Items[i]
		if !metav1.IsControlledBy(cm, batch) {
			continue
		}
		sh := &shard{name: cm.Name, data: []byte(cm.Data[DataKey]), rv: cm.ResourceVersion, exists: true}
		for _, r := range Parse(sh.data) {
			s.stored[r.ID] = r
			sh.count++
		}
		s.shards = append(s.shards, sh)
	}
	return s, nil
}

// Parse reads JSONL results, skipping lines that do not parse.
func Parse(data []byte) []Result {
	var out []Result
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxShardBytes+1)
	for sc.Scan() {
		var r Result
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.ID != "" {
			out = append(out, r)
		}
	}
	return out
}

// Has reports whether id has a stored or pending result.
func (s *Store) Has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, stored := s.stored[id]
	return stored || s.pendingID[id]
}

// Stored returns a copy of the written results by id.
func (s *Store) Stored() map[string]Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]Result, len(s.stored))
	for k, v := range s.stored {
		out[k] = v
	}
	return out
}

// Add buffers results for the next Flush.
func (s *Store) Add(rs ...Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if len(r.Output) > maxOutputBytes {
			r.Output, r.Truncated = r.Output[:maxOutputBytes], true
		}
		s.pending = append(s.pending, r)
		s.pendingID[r.ID] = true
	}
}

// Pending reports how many results wait for a Flush.
func (s *Store) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Flush writes the buffered results and returns how many it stored. A
// result whose shard could not be written stays buffered for the next Flush
// and does not count as stored.
func (s *Store) Flush(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return 0, nil
	}
	type staged struct {
		sh        *shard
		prevData  []byte
		prevCount int32
		results   []Result
	}
	var order []*staged
	bySh := map[*shard]*staged{}
	for _, r := range s.pending {
		line, err := json.Marshal(r)
		if err != nil {
			return 0, err
		}
		line = append(line, '\n')
		sh := s.shardFor(len(line))
		st := bySh[sh]
		if st == nil {
			st = &staged{sh: sh, prevData: sh.data, prevCount: sh.count}
			bySh[sh] = st
			order = append(order, st)
		}
		sh.data = append(sh.data[:len(sh.data):len(sh.data)], line...)
		sh.count++
		st.results = append(st.results, r)
	}
	var failed []Result
	var firstErr error
	stored := 0
	for _, st := range order {
		if err := s.write(ctx, st.sh); err != nil {
			st.sh.data, st.sh.count = st.prevData, st.prevCount
			failed = append(failed, st.results...)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, r := range st.results {
			s.stored[r.ID] = r
		}
		stored += len(st.results)
	}
	s.pending = failed
	clear(s.pendingID)
	for _, r := range failed {
		s.pendingID[r.ID] = true
	}
	s.dropEmptyShards()
	return stored, firstErr
}

// shardFor returns the shard a line of n bytes goes into, opening a new one
// when the last is full.
func (s *Store) shardFor(n int) *shard {
	if len(s.shards) > 0 {
		last := s.shards[len(s.shards)-1]
		if len(last.data)+n <= s.shardBytes {
			return last
		}
	}
	sh := &shard{name: ShardName(s.owner.Name, len(s.shards))}
	s.shards = append(s.shards, sh)
	return sh
}

func (s *Store) dropEmptyShards() {
	for len(s.shards) > 0 && !s.shards[len(s.shards)-1].exists && s.shards[len(s.shards)-1].count == 0 {
		s.shards = s.shards[:len(s.shards)-1]
	}
}

// ShardName names the i-th result ConfigMap of a batch.
func ShardName(batch string, i int) string {
	if len(batch) > 230 {
		batch = batch[:230]
	}
	return fmt.Sprintf("%s-results-%03d", batch, i)
}

func (s *Store) write(ctx context.Context, sh *shard) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: sh.name, Namespace: s.ns, ResourceVersion: sh.rv,
			Labels:          map[string]string{LabelBatch: s.owner.Name, LabelResults: "true"},
			OwnerReferences: []metav1.OwnerReference{s.owner},
		},
		Data: map[string]string{DataKey: string(sh.data)},
	}
	var err error
	if sh.exists {
		err = s.c.Update(ctx, cm)
	} else {
		err = s.c.Create(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("writing results ConfigMap %s: %w", sh.name, err)
	}
	sh.rv, sh.exists = cm.ResourceVersion, true
	return nil
}

// References lists the shards for the batch's status.
func (s *Store) References() []llmv1.ResultReference {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []llmv1.ResultReference
	for _, sh := range s.shards {
		if sh.exists {
			out = append(out, llmv1.ResultReference{Kind: "ConfigMap", Name: sh.name, Items: sh.count})
		}
	}
	return out
}

// Counts tallies stored results by status.
func (s *Store) Counts() map[string]int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int32{}
	for _, r := range s.stored {
		out[r.Status]++
	}
	return out
}
