// Package journal keeps the answers of a provider's batches that wait for
// their batch's own result write, so that a crash of the manager does not
// pay for them twice.
//
// A batch writes its results in bounded flushes (so many results or so many
// seconds): one write carries many results, which keeps API writes per item
// low, but what waits is lost with the manager, and the next leader asks
// those items again. The journal closes that gap for all of a provider's
// batches at once: one ConfigMap write in the manager's namespace carries
// every answer waiting across them, gzipped. The next leader reads the
// journal before it admits anything and hands each batch its answers back.
//
// The journal is a ring of slots per provider: a slot is written again once
// every answer in it is in its batch's results, so a provider's journal
// never holds more objects than the answers waiting at once need, and no
// slot is ever deleted (a delete is a write too). A slot's entries that no
// batch claims after a restart (the batch was deleted) free it after a
// grace period.
package journal

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Labels, annotations and the data key of a journal slot.
const (
	LabelJournal       = "llmquota.dev/results-journal"
	AnnotationProvider = "llmquota.dev/provider"
	AnnotationSlot     = "llmquota.dev/journal-slot"
	DataKey            = "entries.jsonl.gz"
	namePrefix         = "llmquota-journal-"
)

// MaxSlotBytes bounds the uncompressed entries of one slot, so that a
// slot stays under the 1 MiB object limit even for answers that do not
// compress; a write with more takes several slots.
var MaxSlotBytes = 900 << 10

// Entry is one answer in the journal: its batch, and its result as the
// batch's results store it (one JSON line).
type Entry struct {
	Batch  types.UID       `json:"batch"`
	Result json.RawMessage `json:"result"`
}

// Slot is one ConfigMap of a provider's journal. Live counts its entries
// not yet in their batch's results; at zero the slot may be written again.
type Slot struct {
	name    string
	index   int
	written bool // the ConfigMap exists
	live    atomic.Int64
}

// Release says n of the slot's entries are now in their batch's results.
func (s *Slot) Release(n int) {
	if s != nil {
		s.live.Add(-int64(n))
	}
}

// Live is how many of the slot's entries are not yet in their batch's results.
func (s *Slot) Live() int64 { return s.live.Load() }

// Options are what a journal reads and writes with.
type Options struct {
	// Reader lists the slots at a leader's start, uncached.
	Reader client.Reader
	// Writer creates and updates the slots.
	Writer client.Client
	// Namespace is the manager's own.
	Namespace string
}

// Writer writes one provider's journal.
type Writer struct {
	opts     Options
	provider string
	owner    *metav1.OwnerReference

	mu    sync.Mutex
	slots []*Slot
}

// Live is how many of the journal's answers are not yet in their batch's
// results.
func (w *Writer) Live() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, s := range w.slots {
		n += max(0, s.Live())
	}
	return n
}

// SlotName names the i-th slot of a provider's journal: the prefix, the
// provider's name (or a hash of it where that would be too long) and i.
func SlotName(provider string, i int) string {
	if len(provider) > 200 {
		sum := sha256.Sum256([]byte(provider))
		provider = provider[:180] + "-" + hex.EncodeToString(sum[:8])
	}
	return namePrefix + provider + "-" + strconv.Itoa(i)
}

// Write stores entries in free slots (as many as their size needs) and
// returns the slot of each, in order. On an error nothing counts as
// written: the entries must be written again.
func (w *Writer) Write(ctx context.Context, entries []Entry) ([]*Slot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*Slot, 0, len(entries))
	for len(out) < len(entries) {
		rest := entries[len(out):]
		data, n := encode(rest)
		s := w.free()
		s.live.Store(int64(n))
		if err := w.put(ctx, s, data); err != nil {
			s.live.Store(0)
			for _, done := range out { // written, but not what was asked: write again
				done.Release(1)
			}
			return nil, err
		}
		for range n {
			out = append(out, s)
		}
	}
	return out, nil
}

// free returns the first slot with no live entry, a new one if none.
func (w *Writer) free() *Slot {
	for _, s := range w.slots {
		if s.Live() <= 0 {
			return s
		}
	}
	s := &Slot{index: len(w.slots), name: SlotName(w.provider, len(w.slots))}
	w.slots = append(w.slots, s)
	return s
}

// put writes a slot's ConfigMap: created the first time, replaced after.
func (w *Writer) put(ctx context.Context, s *Slot, data []byte) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: w.opts.Namespace,
			Labels:      map[string]string{LabelJournal: "true"},
			Annotations: map[string]string{AnnotationProvider: w.provider, AnnotationSlot: strconv.Itoa(s.index)}},
		BinaryData: map[string][]byte{DataKey: data},
	}
	if w.owner != nil {
		cm.OwnerReferences = []metav1.OwnerReference{*w.owner}
	}
	if s.written {
		err := w.opts.Writer.Update(ctx, cm)
		if !apierrors.IsNotFound(err) {
			return wrap(s, err)
		}
		s.written = false // deleted by someone: create it again
	}
	err := w.opts.Writer.Create(ctx, cm)
	if apierrors.IsAlreadyExists(err) { // an earlier leader's slot no one recovered: replace it
		err = w.opts.Writer.Update(ctx, cm)
	}
	s.written = err == nil
	return wrap(s, err)
}

func wrap(s *Slot, err error) error {
	if err != nil {
		return fmt.Errorf("writing results journal ConfigMap %s: %w", s.name, err)
	}
	return nil
}

// encode gzips the first entries that fit in a slot (at least one) and
// returns how many it took.
func encode(entries []Entry) ([]byte, int) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	size, n := 0, 0
	for _, e := range entries {
		line, _ := json.Marshal(e) // a UID and a JSON line always encode
		if n > 0 && size+len(line)+1 > MaxSlotBytes {
			break
		}
		_, _ = zw.Write(append(line, '\n')) // a bytes.Buffer does not fail
		size += len(line) + 1
		n++
	}
	_ = zw.Close()
	return buf.Bytes(), n
}

// decode reads a slot's entries, skipping lines that do not parse.
func decode(data []byte) ([]Entry, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, len(raw)+1)
	for sc.Scan() {
		var e Entry
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Batch != "" && len(e.Result) > 0 {
			out = append(out, e)
		}
	}
	return out, nil
}
