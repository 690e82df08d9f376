package journal

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Journals are the manager's journals, one per provider, and the answers a
// previous leader left in them for batches to take back.
type Journals struct {
	opts Options

	mu      sync.Mutex
	writers map[string]*Writer
	// left holds each batch's answers found at the start, until the batch
	// takes them (Take) or the grace period frees their slots (Expire).
	left map[types.UID][]Recovered
}

// Recovered is an answer a previous leader journaled: its result line, and
// the slot that holds it until it is in the batch's results.
type Recovered struct {
	Slot   *Slot
	Result []byte
}

// Open reads every journal slot in the manager's namespace: what they hold
// becomes the batches' to take, and the slots are written again once it is
// in the batches' results. A slot that cannot be read is reused at once.
func Open(ctx context.Context, opts Options) (*Journals, error) {
	j := &Journals{opts: opts, writers: map[string]*Writer{}, left: map[types.UID][]Recovered{}}
	var list corev1.ConfigMapList
	if err := opts.Reader.List(ctx, &list, client.InNamespace(opts.Namespace), client.HasLabels{LabelJournal}); err != nil {
		return nil, fmt.Errorf("listing the results journal in %s: %w", opts.Namespace, err)
	}
	for i := range list.Items {
		cm := &list.Items[i]
		provider := cm.Annotations[AnnotationProvider]
		index, err := strconv.Atoi(cm.Annotations[AnnotationSlot])
		if provider == "" || err != nil || cm.Name != SlotName(provider, index) {
			continue // not a slot this manager writes
		}
		s := j.writer(provider, nil).slot(index)
		s.written = true
		entries, _ := decode(cm.BinaryData[DataKey]) // unreadable: nothing to recover, reuse it
		s.live.Store(int64(len(entries)))
		for _, e := range entries {
			j.left[e.Batch] = append(j.left[e.Batch], Recovered{Slot: s, Result: e.Result})
		}
	}
	return j, nil
}

// Writer returns the provider's journal, which names owner (the provider)
// as the owner of the slots it writes, so that they go with it.
func (j *Journals) Writer(provider string, owner *metav1.OwnerReference) *Writer {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.writer(provider, owner)
}

func (j *Journals) writer(provider string, owner *metav1.OwnerReference) *Writer {
	w := j.writers[provider]
	if w == nil {
		w = &Writer{opts: j.opts, provider: provider}
		j.writers[provider] = w
	}
	if owner != nil {
		w.mu.Lock()
		w.owner = owner
		w.mu.Unlock()
	}
	return w
}

// slot returns the i-th slot, making it and those before it (free) if new.
func (w *Writer) slot(i int) *Slot {
	for len(w.slots) <= i {
		w.slots = append(w.slots, &Slot{index: len(w.slots), name: SlotName(w.provider, len(w.slots))})
	}
	return w.slots[i]
}

// Take returns, once, the answers a previous leader journaled for batch.
// The caller releases each slot once its answer is in the batch's results
// (or at once, for one the results already hold).
func (j *Journals) Take(batch types.UID) []Recovered {
	j.mu.Lock()
	defer j.mu.Unlock()
	rs := j.left[batch]
	delete(j.left, batch)
	return rs
}

// Expire frees the slots of answers no batch took: their batches are gone,
// or finished before the crash (their results were written).
func (j *Journals) Expire() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for batch, rs := range j.left {
		for _, r := range rs {
			r.Slot.Release(1)
		}
		n += len(rs)
		delete(j.left, batch)
	}
	return n
}
