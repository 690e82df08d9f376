package results

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
)

// TestStoreAgainstAPIServer writes results into ConfigMaps of a real API
// server, sharded by size, and reads them back as a restarted manager would.
func TestStoreAgainstAPIServer(t *testing.T) {
	if err := llmv1.AddToScheme(scheme.Scheme); err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{CRDDirectoryPaths: []string{filepath.Join("..", "..", "config", "crd", "bases")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest (run through make test, which sets KUBEBUILDER_ASSETS): %v", err)
	}
	defer func() { _ = env.Stop() }()
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	batch := &llmv1.InferenceBatch{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shards"},
		Spec: llmv1.InferenceBatchSpec{ProviderRef: llmv1.ProviderReference{Name: "p"}, Items: []llmv1.Item{{ID: "a", Prompt: "p"}}}}
	if err := c.Create(ctx, batch); err != nil {
		t.Fatal(err)
	}

	s, err := Load(ctx, c, c, batch)
	if err != nil {
		t.Fatal(err)
	}
	s.shardBytes = 1024
	for i := range 50 {
		s.Add(Result{ID: fmt.Sprintf("item-%02d", i), Status: Succeeded, Output: fmt.Sprintf("answer %d with some text to fill the shard", i)})
	}
	if s.Has("item-07") != true || len(s.Stored()) != 0 {
		t.Fatal("added results must be known but not counted stored before Flush")
	}
	if n, err := s.Flush(ctx); err != nil || n != 50 {
		t.Fatalf("flushed %d, %v", n, err)
	}
	var list corev1.ConfigMapList
	if err := c.List(ctx, &list, client.InNamespace("default"), client.MatchingLabels{LabelBatch: "shards"}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) < 3 {
		t.Fatalf("%d ConfigMaps for 50 results at 1 KiB per shard, want several", len(list.Items))
	}
	for _, cm := range list.Items {
		if len(cm.Data[DataKey]) > 1024 {
			t.Fatalf("shard %s holds %d bytes, above its limit", cm.Name, len(cm.Data[DataKey]))
		}
		if !metav1.IsControlledBy(&cm, batch) {
			t.Fatalf("shard %s is not owned by the batch", cm.Name)
		}
	}

	again, err := Load(ctx, c, c, batch)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(again.Stored()); got != 50 {
		t.Fatalf("read back %d results, want 50", got)
	}
	again.shardBytes = 1024
	again.Add(Result{ID: "late", Status: Failed, ErrorClass: "Timeout"})
	if _, err := again.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if counts := again.Counts(); counts[Succeeded] != 50 || counts[Failed] != 1 {
		t.Fatalf("counts %v", counts)
	}
	if refs := again.References(); len(refs) != len(list.Items) && len(refs) != len(list.Items)+1 {
		t.Fatalf("references %v", refs)
	}

	// A write that fails leaves the result buffered and not counted done.
	gone := batch.DeepCopy()
	gone.Namespace = "no-such-namespace"
	broken, _ := Load(ctx, c, c, gone)
	broken.Add(Result{ID: "x", Status: Succeeded})
	if n, err := broken.Flush(ctx); err == nil || n != 0 || broken.Pending() != 1 || len(broken.Stored()) != 0 {
		t.Fatalf("flush into a missing namespace: stored %d, err %v, pending %d", n, err, broken.Pending())
	}
}

func TestParseSkipsBadLines(t *testing.T) {
	got := Parse([]byte("{\"id\":\"a\",\"status\":\"succeeded\"}\nnot json\n{\"status\":\"failed\"}\n{\"id\":\"b\",\"status\":\"failed\"}\n"))
	if len(got) != 2 || got[0].ID != "a" || got[1].ID != "b" {
		t.Fatalf("got %+v", got)
	}
}
