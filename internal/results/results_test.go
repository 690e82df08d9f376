package results

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

// apiServer starts a real API server for the test and returns a client.
func apiServer(t *testing.T) client.Client { return apiserver.Start(t) }

func newBatch(t *testing.T, c client.Client, name string) *llmv1.InferenceBatch {
	t.Helper()
	b := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: "p"}, Items: []llmv1.Item{{ID: "a", Prompt: "p"}}}}
	if err := c.Create(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

func load(t *testing.T, c client.Client, b *llmv1.InferenceBatch, shardBytes int) *Store {
	t.Helper()
	s, err := Load(context.Background(), Options{Lister: c, Reader: c, Writer: c}, b)
	if err != nil {
		t.Fatal(err)
	}
	s.shardBytes = shardBytes
	return s
}

func shards(t *testing.T, c client.Client, batch string) []corev1.ConfigMap {
	t.Helper()
	var list corev1.ConfigMapList
	if err := c.List(context.Background(), &list, client.InNamespace("default"), client.MatchingLabels{LabelBatch: batch}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func result(i int) Result {
	return Result{ID: fmt.Sprintf("item-%02d", i), Status: Succeeded, Output: fmt.Sprintf("answer %d with some text to fill the shard", i)}
}

// TestStoreAgainstAPIServer writes results into ConfigMaps of a real API
// server, sharded by size, and reads them back as a restarted manager would.
func TestStoreAgainstAPIServer(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	batch := newBatch(t, c, "shards")

	s := load(t, c, batch, 1024)
	for i := range 50 {
		s.Add(result(i))
	}
	if !s.Has("item-07") || len(s.Counts()) != 0 {
		t.Fatal("added results must be known but not counted stored before Flush")
	}
	if n, err := s.Flush(ctx); err != nil || n != 50 {
		t.Fatalf("flushed %d, %v", n, err)
	}
	list := shards(t, c, "shards")
	if len(list) < 3 {
		t.Fatalf("%d ConfigMaps for 50 results at 1 KiB per shard, want several", len(list))
	}
	for _, cm := range list {
		if len(cm.Data[DataKey]) > 1024 {
			t.Fatalf("shard %s holds %d bytes, above its limit", cm.Name, len(cm.Data[DataKey]))
		}
		if !metav1.IsControlledBy(&cm, batch) {
			t.Fatalf("shard %s is not owned by the batch", cm.Name)
		}
	}
	if n, _ := s.Pending(); n != 0 || cap(s.pending) != 0 {
		t.Fatalf("pending %d (cap %d) after a full flush", n, cap(s.pending))
	}

	again := load(t, c, batch, 1024)
	if got := again.Counts()[Succeeded]; got != 50 {
		t.Fatalf("read back %d results, want 50", got)
	}
	again.Add(Result{ID: "late", Status: Failed, ErrorClass: "Timeout"}, result(3))
	if n, err := again.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("flushed %d, %v: a result for an id already stored must be dropped", n, err)
	}
	if counts := again.Counts(); counts[Succeeded] != 50 || counts[Failed] != 1 {
		t.Fatalf("counts %v", counts)
	}
	if refs := again.References(); len(refs) != len(list)+1 || refs[len(refs)-1].Items != 1 {
		t.Fatalf("references %v: the late result goes in a shard of its own", refs)
	}

	// A write that fails leaves the result buffered and not counted done.
	gone := batch.DeepCopy()
	gone.Namespace = "no-such-namespace"
	broken := load(t, c, gone, MaxShardBytes)
	broken.Add(Result{ID: "x", Status: Succeeded})
	if n, err := broken.Flush(ctx); err == nil || n != 0 || len(broken.Counts()) != 0 {
		t.Fatalf("flush into a missing namespace: stored %d, err %v", n, err)
	}
	if n, _ := broken.Pending(); n != 1 {
		t.Fatalf("pending %d after a failed write, want 1", n)
	}
}

// TestAnotherWriterLosesNothing: a second writer (a manager that lost its
// lease and wrote once more) takes the name the store would write next;
// the store takes that writer's results as stored, writes its own under
// the next name, and every result is stored once.
func TestAnotherWriterLosesNothing(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	batch := newBatch(t, c, "edits")
	s := load(t, c, batch, MaxShardBytes)
	s.Add(result(0))
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	other := load(t, c, batch, MaxShardBytes)
	other.Add(Result{ID: "theirs", Status: Failed}, result(1))
	if _, err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Add(result(1), result(2))
	if n, err := s.Flush(ctx); err != nil || n != 2 {
		t.Fatalf("flush after the other writer: %d, %v", n, err)
	}
	got := map[string]int{}
	for _, cm := range shards(t, c, "edits") {
		for _, r := range Parse([]byte(cm.Data[DataKey])) {
			got[r.ID]++
		}
	}
	for _, id := range []string{"item-00", "item-01", "item-02", "theirs"} {
		if got[id] != 1 {
			t.Fatalf("%s stored %d times; stored %v", id, got[id], got)
		}
	}
	if st, ok := s.StatusOf("theirs"); !ok || st != Failed || s.Counts()[Failed] != 1 || s.Counts()[Succeeded] != 3 {
		t.Fatalf("the other writer's result is not known: %q %v, counts %v", st, ok, s.Counts())
	}
	if refs := s.References(); len(refs) != 3 {
		t.Fatalf("references %v, want the three shards", refs)
	}

	// A shard someone deletes is not written again: its results are
	// gone, and a restarted manager runs their items again.
	cm := shards(t, c, "edits")[0]
	if err := c.Delete(ctx, &cm); err != nil {
		t.Fatal(err)
	}
	if got := load(t, c, batch, MaxShardBytes).Counts(); got[Succeeded]+got[Failed] != 3 {
		t.Fatalf("after deleting %s the store reads %v, want the other 3 results", cm.Name, got)
	}
}

// countingWriter counts what a store asks the API server to write.
type countingWriter struct {
	client.Client
	creates, updates, bytes int
}

func (w *countingWriter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	w.creates++
	w.bytes += len(obj.(*corev1.ConfigMap).Data[DataKey])
	return w.Client.Create(ctx, obj, opts...)
}

func (w *countingWriter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	w.updates++
	return w.Client.Update(ctx, obj, opts...)
}

// TestFlushesNeverRewriteAShard: a batch flushed 40 times stores each
// result once: one create per flush, no update, and the bytes written are
// the results' own, where rewriting one growing shard wrote them 20 times
// over on average.
func TestFlushesNeverRewriteAShard(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	w := &countingWriter{Client: c}
	s, err := Load(ctx, Options{Lister: c, Reader: c, Writer: w}, newBatch(t, c, "append"))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	for i := range 40 {
		s.Add(result(i))
		lines += len(encode(result(i))) + 1
		if _, err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if w.creates != 40 || w.updates != 0 || w.bytes != lines {
		t.Fatalf("40 flushes: %d creates, %d updates, %d bytes written for %d bytes of results", w.creates, w.updates, w.bytes, lines)
	}
	if got := len(shards(t, c, "append")); got != 40 {
		t.Fatalf("%d shards, want 40", got)
	}
}

func TestParseSkipsBadLines(t *testing.T) {
	got := Parse([]byte("{\"id\":\"a\",\"status\":\"succeeded\"}\nnot json\n{\"status\":\"failed\"}\n{\"id\":\"b\",\"status\":\"failed\"}\n"))
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("got %+v", got)
	}
}

func TestFlushPolicy(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	p := FlushPolicy{Interval: 10 * time.Second, Items: 50}
	for name, tc := range map[string]struct {
		now     time.Time
		pending int
		last    bool
		due     bool
		wait    time.Duration
	}{
		"nothing waits":              {now: t0.Add(time.Hour), pending: 0},
		"few and fresh":              {now: t0.Add(3 * time.Second), pending: 7, wait: 7 * time.Second},
		"enough items":               {now: t0, pending: 50, due: true},
		"oldest waited the interval": {now: t0.Add(10 * time.Second), pending: 1, due: true},
		"1ns before the interval":    {now: t0.Add(10*time.Second - 1), pending: 1, wait: 1},
		"the batch's last results":   {now: t0, pending: 1, last: true, due: true},
	} {
		t.Run(name, func(t *testing.T) {
			due, wait := p.Due(tc.now, t0, tc.pending, tc.last)
			if due != tc.due || wait != tc.wait {
				t.Fatalf("Due = %v, %v; want %v, %v", due, wait, tc.due, tc.wait)
			}
		})
	}
	if due, _ := (FlushPolicy{}).Due(t0, t0, 1, false); !due {
		t.Fatal("the zero policy must write at once")
	}
}

// TestReferencesAreBounded: a batch with more shards than the status
// lists names the first 31 and, last, the label selector of them all with
// the results of the rest.
func TestReferencesAreBounded(t *testing.T) {
	s := &Store{owner: metav1.OwnerReference{Name: "long"}}
	for i := range MaxListedShards + 8 {
		s.shards = append(s.shards, &shard{name: ShardName("long", i), count: 10})
	}
	refs := s.References()
	if len(refs) != MaxListedShards {
		t.Fatalf("%d references, want %d", len(refs), MaxListedShards)
	}
	last := refs[len(refs)-1]
	if refs[0].Name != "long-results-000" || last != (llmv1.ResultReference{Kind: "ConfigMaps", Name: LabelBatch + "=long", Items: 9 * 10}) {
		t.Fatalf("first %+v, last %+v", refs[0], last)
	}
	s.shards = s.shards[:MaxListedShards]
	if refs := s.References(); len(refs) != MaxListedShards || refs[len(refs)-1].Kind != "ConfigMap" {
		t.Fatalf("%d shards are listed one by one: %+v", MaxListedShards, refs[len(refs)-1])
	}
}

// TestSameNameAfterDeletion: a batch created again under the name of a
// deleted one whose shards are still there (the garbage collector has not
// run yet, or the deletion orphaned them) reads none of them as its own
// and writes its results after them, whether it saw them when it loaded
// or met one when it wrote.
func TestSameNameAfterDeletion(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	first := newBatch(t, c, "again")
	old := load(t, c, first, MaxShardBytes)
	for i := range 2 { // two shards
		old.Add(result(i))
		if _, err := old.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(ctx, first); err != nil { // no garbage collector runs here: its shards stay
		t.Fatal(err)
	}
	second := newBatch(t, c, "again")
	if second.UID == first.UID {
		t.Fatal("the batch created again has the first one's UID")
	}

	loaded := load(t, c, second, MaxShardBytes)
	if n := len(loaded.Counts()); n != 0 {
		t.Fatalf("the new batch read %d kinds of results of the deleted one", n)
	}
	// A store that did not see them (made before they were listed) meets
	// them when it writes.
	blind := &Store{ledger: newLedger(nil), opts: loaded.opts, ns: loaded.ns, shardBytes: MaxShardBytes, owner: loaded.owner}
	for i, s := range []*Store{loaded, blind} {
		s.Add(result(10 + i))
		if n, err := s.Flush(ctx); err != nil || n != 1 {
			t.Fatalf("flush of the new batch: %d, %v", n, err)
		}
	}
	mine := 0
	for _, cm := range shards(t, c, "again") {
		switch {
		case metav1.IsControlledBy(&cm, second):
			mine++
		case !metav1.IsControlledBy(&cm, first):
			t.Fatalf("shard %s owned by neither batch", cm.Name)
		case len(Parse([]byte(cm.Data[DataKey]))) != 1:
			t.Fatalf("the deleted batch's shard %s was written again", cm.Name)
		}
	}
	if mine != 2 {
		t.Fatalf("%d shards of the new batch, want 2 (one per store)", mine)
	}
}
