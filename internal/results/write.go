package results

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// writeAttempts bounds how many shard names one write tries when another
// writer took them first, before it gives up until the next Flush.
const writeAttempts = 4

// shard is one result ConfigMap, written once.
type shard struct {
	name  string
	count int32
}

// Flush writes the buffered results and returns how many it stored. Each
// write is a ConfigMap of its own, created once and never written again
// (append-only): etcd keeps every version of an object it rewrites until
// the API server compacts its history, so a shard rewritten at each flush
// of a long batch would store its first results many times over. A write
// takes at most shardBytes; a result whose shard could not be written
// stays buffered for the next Flush and does not count as stored.
func (s *Store) Flush(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := 0
	for len(s.pending) > 0 {
		n, size := 0, 0
		for _, r := range s.pending {
			if n > 0 && size+len(r.line)+1 > s.shardBytes {
				break
			}
			size += len(r.line) + 1
			n++
		}
		if err := s.create(ctx, s.pending[:n]); err != nil {
			return stored, err
		}
		for _, r := range s.pending[:n] {
			delete(s.pendingID, r.ID)
		}
		stored += n
		clear(s.pending[:n]) // release the outputs now stored
		s.pending = s.pending[n:]
	}
	s.pending = nil
	return stored, nil
}

// create stores rs as the batch's next shard. When another writer (a
// manager that lost its lease and wrote once more) took that name first,
// its results are taken as stored, ours that it lacks go under the next
// name, and nothing it wrote is written again.
func (s *Store) create(ctx context.Context, rs []pendingResult) error {
	for attempt := 1; ; attempt++ {
		sh := &shard{name: ShardName(s.owner.Name, s.next)}
		var data []byte
		for _, r := range rs {
			if _, done := s.stored[r.ID]; !done {
				data = append(append(data, r.line...), '\n')
				sh.count++
			}
		}
		if sh.count == 0 {
			return nil // the other writer stored them all
		}
		err := s.opts.Writer.Create(ctx, s.object(sh.name, data))
		if err == nil {
			s.next++
			s.shards = append(s.shards, sh)
			for _, r := range rs {
				s.record(r.idLine)
			}
			return nil
		}
		if !apierrors.IsAlreadyExists(err) || attempt == writeAttempts {
			return fmt.Errorf("writing results ConfigMap %s: %w", sh.name, err)
		}
		if err := s.adoptShard(ctx, sh.name); err != nil && !errors.Is(err, errForeignShard) {
			return err
		}
		s.next++ // ours, adopted, or an earlier batch's: written after either way
	}
}

// errForeignShard says a shard's name is taken by another object than the
// batch: an earlier batch of the same name, not yet collected.
var errForeignShard = errors.New("exists but is not owned by this batch")

// adoptShard reads a shard written before (by an earlier leader, or by
// another writer that took the name this one meant to write) and takes its
// results as stored.
func (s *Store) adoptShard(ctx context.Context, name string) error {
	var cm corev1.ConfigMap
	if err := s.opts.Reader.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: name}, &cm); err != nil {
		return fmt.Errorf("reading results ConfigMap %s: %w", name, err)
	}
	if !metav1.IsControlledBy(&cm, &metav1.ObjectMeta{UID: s.owner.UID}) {
		return fmt.Errorf("results ConfigMap %s: %w", name, errForeignShard)
	}
	sh := &shard{name: name}
	for _, r := range scanIDs([]byte(cm.Data[DataKey])) {
		if s.record(r) {
			sh.count++
		}
	}
	s.shards = append(s.shards, sh)
	return nil
}

// object is the ConfigMap of a shard holding data.
func (s *Store) object(name string, data []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: s.ns,
			Labels:          map[string]string{LabelBatch: s.owner.Name, LabelResults: "true"},
			OwnerReferences: []metav1.OwnerReference{s.owner},
		},
		Data: map[string]string{DataKey: string(data)},
	}
}
