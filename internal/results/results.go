// Package results stores an InferenceBatch's item results as JSONL in
// ConfigMaps owned by the batch, sharded below the 1 MiB object limit. An
// item counts as done only once its result is written here; a restarted
// manager reads the shards back and sends only what has no result.
//
// The store is built for large batches: results are buffered and written
// in bounded flushes (see FlushPolicy), each flush is a new shard that is
// never written again (append-only, so etcd stores each result once), a
// write that finds its name taken by another writer takes that writer's
// results and moves on to the next name, and a result's bytes are released
// once it is stored (the store keeps only each id's status).
package results

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/cost"
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

// ConfigMapItemsAdvised is the size rule for the ConfigMap sink: above
// this many items a batch's results (a few MiB at typical output sizes)
// belong in object storage, and the manager says so in a Warning Event.
// etcd is sized for control-plane objects (2 GiB by default, 8 GiB at
// most, for the whole cluster), and every result write there stays in its
// history until compaction.
const ConfigMapItemsAdvised = 10_000

// MaxListedShards bounds the references a batch's status lists: a flush
// is a shard of its own, and a long batch flushes many times. Past it, the
// last reference, of kind ConfigMaps, names the label selector of every
// shard and counts the results of those not listed.
const MaxListedShards = 32

// MaxShardBytes keeps each ConfigMap well under the 1 MiB object limit,
// leaving room for metadata.
const MaxShardBytes = 900 << 10

// maxOutputBytes caps one result's output text, so one item cannot fill a shard.
const maxOutputBytes = 64 << 10

// Result is one item's outcome, one JSON line in a shard.
type Result struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Output    string `json:"output,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	TokensIn  int64  `json:"tokensIn,omitempty"`
	TokensOut int64  `json:"tokensOut,omitempty"`
	Attempts  int    `json:"attempts,omitempty"`
	LatencyMs int64  `json:"latencyMs,omitempty"`
	Provider  string `json:"provider,omitempty"`
	// Model is the model that answered, as the provider named it.
	Model string `json:"model,omitempty"`
	// FinishReason is why the answer ended: stop, length (cut at the
	// output cap), safety (withheld by the provider's policy) or other.
	FinishReason string `json:"finishReason,omitempty"`
	// CostUSD is the call's cost at the provider's prices, thinking included.
	CostUSD    string `json:"costUSD,omitempty"`
	ErrorClass string `json:"errorClass,omitempty"`
	Error      string `json:"error,omitempty"`
	// CacheKey identifies model, parameters and prompt, for reuse.
	CacheKey string `json:"cacheKey,omitempty"`
}

// Options are what a Store reads and writes with.
type Options struct {
	// Lister lists the batch's shard ConfigMaps by label. The manager
	// passes its cache, which holds only the metadata of result ConfigMaps,
	// so admitting a batch that never stored anything costs no API call.
	Lister client.Reader
	// Reader reads a shard's data, uncached (the manager keeps no informer
	// of ConfigMap data).
	Reader client.Reader
	// Writer creates and updates the shards.
	Writer client.Client
	// Clock stamps when results start waiting for a flush; nil is the real clock.
	Clock clock.PassiveClock
}

// Sink is where a batch's results go: Add buffers, Flush writes, and an
// item counts as done once its result is written. Store (ConfigMaps) and
// S3Store (object storage) implement it; both are safe for concurrent use.
type Sink interface {
	// Add buffers results; one for an id that already has one is dropped.
	Add(rs ...Result)
	// Has reports whether id has a stored or buffered result.
	Has(id string) bool
	// StatusOf returns the status of id's stored result; false if none is
	// stored (buffered or not at all).
	StatusOf(id string) (string, bool)
	// Pending reports how many results wait, and since when the oldest has.
	Pending() (int, time.Time)
	// Flush writes what waits and returns how many it stored.
	Flush(ctx context.Context) (int, error)
	// Counts tallies stored results by status.
	Counts() map[string]int32
	// Finishes tallies stored answers that did not end by themselves, by
	// finish reason (length, safety, other).
	Finishes() map[string]int32
	// Usage sums the stored answers' tokens and cost (cached ones aside).
	Usage() Usage
	// References names where the results are, for the batch's status.
	References() []llmv1.ResultReference
}

// ledger is what every sink keeps: the status of each stored result (its
// bytes are released once written) and the results waiting for a write.
type ledger struct {
	clock clock.PassiveClock

	mu       sync.Mutex
	stored   map[string]string
	counts   map[string]int32
	finishes map[string]int32
	// usage sums the stored answers' tokens and cost (cached ones aside).
	tokensIn, tokensOut int64
	cost                *big.Rat
	// pending results are added, not yet written, each already encoded
	// as its JSON line: one allocation per result instead of a Result and
	// its strings, for what every running batch holds until its write;
	// pendingSince is when the oldest of them was added.
	pending      []pendingResult
	pendingID    map[string]bool
	pendingSince time.Time
}

func newLedger(c clock.PassiveClock) ledger {
	if c == nil {
		c = clock.RealClock{}
	}
	return ledger{clock: c, stored: map[string]string{}, counts: map[string]int32{}, pendingID: map[string]bool{}}
}

// pendingResult is a result waiting for a write.
type pendingResult struct {
	idLine
	// line is the result's JSON line, without the newline.
	line []byte
}

// encode returns r's JSON line. A Result holds only strings, numbers and
// a bool, which always encode.
func encode(r Result) []byte {
	line, _ := json.Marshal(r)
	return line
}

// Store is one batch's results in ConfigMaps owned by the batch.
type Store struct {
	ledger
	opts Options
	// owner is the batch's identity, copied: the caller keeps using its object.
	owner metav1.OwnerReference
	ns    string
	// shardBytes is MaxShardBytes; tests lower it to exercise sharding.
	shardBytes int
	// shards are the batch's ConfigMaps, each written once.
	shards []*shard
	// next is the index of the next shard's name (ShardName).
	next int
}

var _ Sink = (*Store)(nil)

// Load reads a batch's shards back and returns a Store that writes more.
// Shards of an earlier batch with the same name (another UID), which the
// garbage collector has not deleted yet or never will (a deletion with
// --cascade=orphan), are not read, and their names are not written.
func Load(ctx context.Context, opts Options, batch *llmv1.InferenceBatch) (*Store, error) {
	yes := true
	s := &Store{ledger: newLedger(opts.Clock), opts: opts, ns: batch.Namespace, shardBytes: MaxShardBytes,
		owner: metav1.OwnerReference{
			APIVersion: llmv1.GroupVersion.String(), Kind: "InferenceBatch", Name: batch.Name, UID: batch.UID,
			Controller: &yes, BlockOwnerDeletion: &yes,
		}}
	var list metav1.PartialObjectMetadataList
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMapList"))
	if err := opts.Lister.List(ctx, &list, client.InNamespace(batch.Namespace), client.MatchingLabels{LabelBatch: batch.Name}); err != nil {
		return nil, fmt.Errorf("listing result ConfigMaps: %w", err)
	}
	var names []string
	for i := range list.Items {
		// Every name listed is taken, an earlier batch's shard (not yet
		// collected, or orphaned) as much as ours: this batch writes after
		// them all.
		s.next = max(s.next, shardIndex(list.Items[i].Name)+1)
		if metav1.IsControlledBy(&list.Items[i], batch) {
			names = append(names, list.Items[i].Name)
		}
	}
	sort.Slice(names, func(i, j int) bool { return shardIndex(names[i]) < shardIndex(names[j]) })
	for _, name := range names {
		if err := s.adoptShard(ctx, name); err != nil {
			return nil, err
		}
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

// idLine is the part of a result line the store keeps.
type idLine struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Finish    string `json:"finishReason"`
	TokensIn  int64  `json:"tokensIn"`
	TokensOut int64  `json:"tokensOut"`
	Cost      string `json:"costUSD"`
}

// scanIDs reads the ids and statuses of JSONL results without their outputs.
func scanIDs(data []byte) []idLine {
	var out []idLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxShardBytes+1)
	for sc.Scan() {
		var r idLine
		if json.Unmarshal(sc.Bytes(), &r) == nil && r.ID != "" {
			out = append(out, r)
		}
	}
	return out
}

// record marks a result stored; false if it already was.
func (s *ledger) record(l idLine) bool {
	if _, ok := s.stored[l.ID]; ok {
		return false
	}
	status := intern(l.Status)
	s.stored[l.ID] = status
	s.counts[status]++
	if status != Cached {
		s.tokensIn += l.TokensIn
		s.tokensOut += l.TokensOut
		if c, ok := new(big.Rat).SetString(l.Cost); ok && l.Cost != "" {
			if s.cost == nil {
				s.cost = new(big.Rat)
			}
			s.cost.Add(s.cost, c)
		}
	}
	if l.Finish != "" && l.Finish != "stop" {
		if s.finishes == nil {
			s.finishes = map[string]int32{}
		}
		s.finishes[l.Finish]++
	}
	return true
}

// intern returns the package's constant for a known status, so a
// 100,000-item batch keeps one copy of each status string, not one per id.
func intern(status string) string {
	for _, known := range [...]string{Succeeded, Failed, Filtered, Cached} {
		if status == known {
			return known
		}
	}
	return status
}

// Has reports whether id has a stored or pending result.
func (s *ledger) Has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, stored := s.stored[id]
	return stored || s.pendingID[id]
}

// StatusOf returns the status of id's stored result; false if none is stored.
func (s *ledger) StatusOf(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.stored[id]
	return st, ok
}

// Add buffers results for the next Flush. A result for an id that already
// has one, stored or pending, is dropped: the first result of an item wins.
func (s *ledger) Add(rs ...Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if _, ok := s.stored[r.ID]; ok || s.pendingID[r.ID] {
			continue
		}
		if len(r.Output) > maxOutputBytes {
			r.Output, r.Truncated = r.Output[:maxOutputBytes], true
		}
		if len(s.pending) == 0 {
			s.pendingSince = s.clock.Now()
		}
		s.pending = append(s.pending, pendingResult{idLine: idLine{ID: r.ID, Status: intern(r.Status), Finish: r.FinishReason,
			TokensIn: r.TokensIn, TokensOut: r.TokensOut, Cost: r.CostUSD}, line: encode(r)})
		s.pendingID[r.ID] = true
	}
}

// Pending reports how many results wait for a Flush, and since when the
// oldest of them has waited.
func (s *ledger) Pending() (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending), s.pendingSince
}

// References lists the shards for the batch's status.
func (s *Store) References() []llmv1.ResultReference {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []llmv1.ResultReference
	for i, sh := range s.shards {
		if i == MaxListedShards-1 && len(s.shards) > MaxListedShards {
			rest := llmv1.ResultReference{Kind: "ConfigMaps", Name: LabelBatch + "=" + s.owner.Name}
			for _, sh := range s.shards[i:] {
				rest.Items += sh.count
			}
			return append(out, rest)
		}
		out = append(out, llmv1.ResultReference{Kind: "ConfigMap", Name: sh.name, Items: sh.count})
	}
	return out
}

// Counts tallies stored results by status.
func (s *ledger) Counts() map[string]int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.counts)
}

// Finishes tallies stored answers by finish reason, other than stop.
func (s *ledger) Finishes() map[string]int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.finishes)
}

// Usage is what stored answers used: tokens, and cost in USD (a decimal
// string; empty when no answer had a price).
type Usage struct {
	TokensIn, TokensOut int64
	CostUSD             string
}

// Usage sums the stored answers' tokens and cost.
func (s *ledger) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := Usage{TokensIn: s.tokensIn, TokensOut: s.tokensOut}
	if s.cost != nil {
		u.CostUSD = cost.Format(s.cost)
	}
	return u
}

// shardIndex is the i of ShardName(batch, i); -1 for a name it did not make.
func shardIndex(name string) int {
	at := strings.LastIndex(name, shardInfix)
	if at < 0 {
		return -1
	}
	i, err := strconv.Atoi(name[at+len(shardInfix):])
	if err != nil {
		return -1
	}
	return i
}

const shardInfix = "-results-"

// ShardName names the i-th result ConfigMap of a batch.
func ShardName(batch string, i int) string {
	if len(batch) > 230 {
		batch = batch[:230]
	}
	return fmt.Sprintf("%s%s%03d", batch, shardInfix, i)
}
