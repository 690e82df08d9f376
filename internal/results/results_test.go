package results

import (
	"context"
	"fmt"
	"strings"
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
	// Only the open shard keeps its bytes; stored results keep no output.
	for i, sh := range s.shards {
		if last := i == len(s.shards)-1; (sh.data != nil) != last || sh.open != last {
			t.Fatalf("shard %d: open %v, holds %d bytes; only the last may", i, sh.open, len(sh.data))
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
	if refs := again.References(); len(refs) != len(list) && len(refs) != len(list)+1 {
		t.Fatalf("references %v", refs)
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

// TestOutsideEditsDoNotBlockWrites: a `kubectl label` of a shard, a second
// writer (a manager that lost its lease), and a deleted shard each meet the
// next flush, which merges instead of failing; no result is lost.
func TestOutsideEditsDoNotBlockWrites(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	batch := newBatch(t, c, "edits")
	s := load(t, c, batch, MaxShardBytes)
	s.Add(result(0))
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// An outside label: the next write keeps it.
	cm := shards(t, c, "edits")[0]
	cm.Labels["team"] = "news"
	if err := c.Update(ctx, &cm); err != nil {
		t.Fatal(err)
	}
	s.Add(result(1))
	if n, err := s.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("flush after an outside label: %d, %v", n, err)
	}
	cm = shards(t, c, "edits")[0]
	if cm.Labels["team"] != "news" || len(Parse([]byte(cm.Data[DataKey]))) != 2 {
		t.Fatalf("labels %v, %d results", cm.Labels, len(Parse([]byte(cm.Data[DataKey]))))
	}

	// A second writer appends its own result to the same shard.
	other := load(t, c, batch, MaxShardBytes)
	other.Add(Result{ID: "theirs", Status: Failed})
	if _, err := other.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.Add(result(2))
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range Parse([]byte(shards(t, c, "edits")[0].Data[DataKey])) {
		if got[r.ID] {
			t.Fatalf("%s stored twice", r.ID)
		}
		got[r.ID] = true
	}
	for _, id := range []string{"item-00", "item-01", "item-02", "theirs"} {
		if !got[id] {
			t.Fatalf("%s lost; stored %v", id, got)
		}
	}
	if st, ok := s.StatusOf("theirs"); !ok || st != Failed || s.Counts()[Failed] != 1 {
		t.Fatalf("the other writer's result is not known: %q %v, counts %v", st, ok, s.Counts())
	}

	// A deleted shard is written again with everything the store holds.
	cm = shards(t, c, "edits")[0]
	if err := c.Delete(ctx, &cm); err != nil {
		t.Fatal(err)
	}
	s.Add(result(3))
	if _, err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(Parse([]byte(shards(t, c, "edits")[0].Data[DataKey]))); n != 5 {
		t.Fatalf("recreated shard holds %d results, want 5", n)
	}
}

// TestAppendDoesNotCopyTheShard: appending a result to the open shard
// reuses its buffer (amortised growth), rather than copying the shard for
// every line as the first version did.
func TestAppendDoesNotCopyTheShard(t *testing.T) {
	c := apiServer(t)
	ctx := context.Background()
	s := load(t, c, newBatch(t, c, "append"), MaxShardBytes)
	copies := 0
	var last *byte
	for i := range 200 {
		s.Add(result(i))
		if _, err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		data := s.shards[0].data
		if p := &data[:1][0]; p != last {
			copies++
			last = p
		}
	}
	if copies > 16 {
		t.Fatalf("the shard's buffer moved %d times in 200 appends, want amortised growth", copies)
	}
}

func TestParseSkipsBadLines(t *testing.T) {
	got := Parse([]byte("{\"id\":\"a\",\"status\":\"succeeded\"}\nnot json\n{\"status\":\"failed\"}\n{\"id\":\"b\",\"status\":\"failed\"}\n"))
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("got %+v", got)
	}
}

func TestUnionKeepsEveryResultOnce(t *testing.T) {
	server := "{\"id\":\"a\",\"status\":\"succeeded\"}\n{\"id\":\"s\",\"status\":\"failed\"}"
	ours := "{\"id\":\"a\",\"status\":\"succeeded\"}\n{\"id\":\"b\",\"status\":\"cached\"}\n"
	out, theirs := union([]byte(server), []byte(ours))
	var ids []string
	for _, r := range Parse(out) {
		ids = append(ids, r.ID)
	}
	if strings.Join(ids, ",") != "a,s,b" || len(theirs) != 1 || theirs[0].ID != "s" {
		t.Fatalf("union: %v, theirs %v", ids, theirs)
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
