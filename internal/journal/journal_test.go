package journal

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/llmquota/llmquota/internal/testbed/apiserver"
)

func entries(batch types.UID, n, size int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		out[i] = Entry{Batch: batch, Result: fmt.Appendf(nil, `{"id":"i%d","status":"Succeeded","output":%q}`, i, strings.Repeat("x", size))}
	}
	return out
}

func slotNames(t *testing.T, k client.Client) []string {
	t.Helper()
	var list corev1.ConfigMapList
	if err := k.List(context.Background(), &list, client.InNamespace("default"), client.HasLabels{LabelJournal}); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cm := range list.Items {
		names = append(names, cm.Name)
	}
	return names
}

// TestSlotsAreWrittenAgainOnceFree: a write takes a free slot; while its
// answers are not in their results the next write takes another, and once
// they are, the first slot is written again instead of a new one. A new
// leader reads back exactly what the slots hold now, per batch.
func TestSlotsAreWrittenAgainOnceFree(t *testing.T) {
	ctx := context.Background()
	k := apiserver.Start(t)
	opts := Options{Reader: k, Writer: k, Namespace: "default"}
	j, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	owner := &metav1.OwnerReference{APIVersion: "llmquota.dev/v1alpha1", Kind: "LLMProvider", Name: "p", UID: "p-uid"}
	w := j.Writer("p", owner)
	first, err := w.Write(ctx, entries("a", 3, 10))
	if err != nil {
		t.Fatal(err)
	}
	second, err := w.Write(ctx, entries("b", 2, 10))
	if err != nil {
		t.Fatal(err)
	}
	if first[0] == second[0] || w.Live() != 5 {
		t.Fatalf("the second write took the first's slot while it held 3 live answers (live %d)", w.Live())
	}
	for _, s := range first {
		s.Release(1)
	}
	third, err := w.Write(ctx, entries("c", 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	if third[0] != first[0] {
		t.Fatalf("a write after the first slot was freed took %s, want %s again", third[0].name, first[0].name)
	}
	if names := slotNames(t, k); len(names) != 2 {
		t.Fatalf("slots %v, want 2", names)
	}
	// A slot someone deleted is created again, not failed on for ever.
	if err := k.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: SlotName("p", 1)}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range second {
		s.Release(1)
	}
	if _, err := w.Write(ctx, entries("b", 2, 10)); err != nil {
		t.Fatalf("writing after a slot was deleted: %v", err)
	}

	again, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if a, b, c := len(again.Take("a")), len(again.Take("b")), len(again.Take("c")); a != 0 || b != 2 || c != 1 {
		t.Fatalf("a new leader takes back a:%d b:%d c:%d, want 0, 2 and 1 (a's slot was written again)", a, b, c)
	}
	if n := again.Expire(); n != 0 {
		t.Fatalf("%d answers left after every batch took its own, want 0", n)
	}
	var cm corev1.ConfigMap
	if err := k.Get(ctx, types.NamespacedName{Namespace: "default", Name: SlotName("p", 0)}, &cm); err != nil {
		t.Fatal(err)
	}
	if len(cm.OwnerReferences) != 1 || cm.OwnerReferences[0].UID != "p-uid" {
		t.Fatalf("slot owners %v, want the provider", cm.OwnerReferences)
	}
}

// TestLargeWritesTakeSeveralSlots: answers beyond one slot's bytes go to
// more slots in one write, each under the object limit.
func TestLargeWritesTakeSeveralSlots(t *testing.T) {
	ctx := context.Background()
	k := apiserver.Start(t)
	defer func(was int) { MaxSlotBytes = was }(MaxSlotBytes)
	MaxSlotBytes = 4 << 10
	j, err := Open(ctx, Options{Reader: k, Writer: k, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	slots, err := j.Writer("p", nil).Write(ctx, entries("a", 10, 1000))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[*Slot]int{}
	for _, s := range slots {
		seen[s]++
	}
	if len(slots) != 10 || len(seen) < 3 {
		t.Fatalf("10 answers of 1 KB in %d slots of 4 KB (%d returned), want at least 3", len(seen), len(slots))
	}
	again, err := Open(ctx, Options{Reader: k, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(again.Take("a")); n != 10 {
		t.Fatalf("read back %d answers, want 10", n)
	}
}

// TestOpenSkipsWhatItDoesNotWrite: a labelled ConfigMap that is not a
// slot by its name, or whose data does not read, recovers nothing; the
// unreadable slot is free for the next write.
func TestOpenSkipsWhatItDoesNotWrite(t *testing.T) {
	ctx := context.Background()
	k := apiserver.Start(t)
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses", Namespace: "default", Labels: map[string]string{LabelJournal: "true"},
			Annotations: map[string]string{AnnotationProvider: "p", AnnotationSlot: "0"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: SlotName("p", 0), Namespace: "default", Labels: map[string]string{LabelJournal: "true"},
			Annotations: map[string]string{AnnotationProvider: "p", AnnotationSlot: "0"}}, BinaryData: map[string][]byte{DataKey: []byte("not gzip")}},
	} {
		if err := k.Create(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	j, err := Open(ctx, Options{Reader: k, Writer: k, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if n := j.Expire(); n != 0 {
		t.Fatalf("recovered %d answers from what is not a readable slot, want 0", n)
	}
	slots, err := j.Writer("p", nil).Write(ctx, entries("a", 1, 10))
	if err != nil {
		t.Fatal(err)
	}
	if slots[0].name != SlotName("p", 0) {
		t.Fatalf("wrote %s, want the unreadable slot %s again", slots[0].name, SlotName("p", 0))
	}
}
