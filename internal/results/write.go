package results

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// writeAttempts bounds how often one shard write re-reads and merges after
// meeting someone else's change before it gives up until the next Flush.
const writeAttempts = 4

// shard is one result ConfigMap.
type shard struct {
	name   string
	count  int32
	exists bool
	rv     string // resourceVersion of our last read or write
	// labels and annotations as last seen on the server: a write keeps
	// what others added (a `kubectl label`, an annotation of a tool).
	labels, annotations map[string]string
	// data is the shard's JSONL while it is open for appends; nil once it
	// is full, since it is never written again.
	data []byte
	open bool
}

// adopt takes the server's view of the shard.
func (sh *shard) adopt(cm *corev1.ConfigMap) {
	sh.rv, sh.labels, sh.annotations = cm.ResourceVersion, cm.Labels, cm.Annotations
	sh.data, sh.exists = []byte(cm.Data[DataKey]), true
}

// Flush writes the buffered results and returns how many it stored. Each
// result goes into the open shard, appended in place; a shard that cannot
// take the next line is closed (its bytes released) and the next opened.
// A result whose shard could not be written stays buffered for the next
// Flush and does not count as stored.
func (s *Store) Flush(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := 0
	for len(s.pending) > 0 {
		sh := s.openShard()
		prev := len(sh.data)
		n := 0
		for _, r := range s.pending {
			if len(sh.data) > 0 && len(sh.data)+len(r.line)+1 > s.shardBytes {
				break
			}
			sh.data = append(append(sh.data, r.line...), '\n')
			n++
		}
		if n == 0 { // full: close it, release its bytes, open the next
			sh.open, sh.data = false, nil
			continue
		}
		data, theirs, err := s.write(ctx, sh, sh.data)
		if err != nil {
			sh.data = sh.data[:prev]
			return stored, err
		}
		sh.data = data
		for _, r := range theirs { // written by someone else meanwhile
			if s.record(r) {
				sh.count++
			}
		}
		for _, r := range s.pending[:n] {
			if s.record(r.idLine) {
				sh.count++
			}
			delete(s.pendingID, r.ID)
		}
		stored += n
		clear(s.pending[:n]) // release the outputs now stored
		s.pending = s.pending[n:]
	}
	s.pending = nil
	return stored, nil
}

// openShard returns the shard appends go to, opening a new one when the
// last is full.
func (s *Store) openShard() *shard {
	if n := len(s.shards); n > 0 && s.shards[n-1].open {
		return s.shards[n-1]
	}
	sh := &shard{name: ShardName(s.owner.Name, len(s.shards)), open: true}
	s.shards = append(s.shards, sh)
	return sh
}

// write stores data as the shard's content. When the shard changed on the
// server since we last saw it (an outside edit, or a manager that lost its
// lease and wrote once more), it re-reads the shard and writes the union:
// the server's lines, then ours whose ids it lacks. It returns the data
// written and the results that were the server's alone.
func (s *Store) write(ctx context.Context, sh *shard, data []byte) ([]byte, []idLine, error) {
	var theirs []idLine
	for attempt := 1; ; attempt++ {
		cm := s.object(sh, data)
		var err error
		if sh.exists {
			err = s.opts.Writer.Update(ctx, cm)
		} else {
			err = s.opts.Writer.Create(ctx, cm)
		}
		if err == nil {
			sh.rv, sh.labels, sh.annotations, sh.exists = cm.ResourceVersion, cm.Labels, cm.Annotations, true
			return data, theirs, nil
		}
		if sh.exists && apierrors.IsNotFound(err) && attempt < writeAttempts {
			sh.exists, sh.rv = false, "" // deleted meanwhile: create it again with all we hold
			continue
		}
		changed := apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
		if !changed || attempt == writeAttempts {
			return nil, nil, fmt.Errorf("writing results ConfigMap %s: %w", sh.name, err)
		}
		var server corev1.ConfigMap
		if err := s.opts.Reader.Get(ctx, types.NamespacedName{Namespace: s.ns, Name: sh.name}, &server); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, nil, fmt.Errorf("re-reading results ConfigMap %s: %w", sh.name, err)
			}
			sh.exists, sh.rv = false, "" // deleted meanwhile: create it again with all we hold
			continue
		}
		if !metav1.IsControlledBy(&server, &metav1.ObjectMeta{UID: s.owner.UID}) {
			return nil, nil, fmt.Errorf("results ConfigMap %s exists but is not owned by this batch", sh.name)
		}
		var merged []byte
		merged, theirs = union([]byte(server.Data[DataKey]), data)
		sh.rv, sh.labels, sh.annotations, sh.exists = server.ResourceVersion, server.Labels, server.Annotations, true
		data = merged
	}
}

// union returns the server's lines followed by ours whose ids the server
// lacks, and the server's results that ours lacked.
func union(server, ours []byte) ([]byte, []idLine) {
	have := map[string]bool{}
	serverLines := scanIDs(server)
	for _, r := range serverLines {
		have[r.ID] = true
	}
	mine := map[string]bool{}
	out := append([]byte(nil), server...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	for line := range bytes.Lines(ours) {
		var r idLine
		if json.Unmarshal(line, &r) != nil || r.ID == "" {
			continue
		}
		mine[r.ID] = true
		if !have[r.ID] {
			out = append(out, line...)
		}
	}
	var theirs []idLine
	for _, r := range serverLines {
		if !mine[r.ID] {
			theirs = append(theirs, r)
		}
	}
	return out, theirs
}

// object is the ConfigMap to write for sh holding data.
func (s *Store) object(sh *shard, data []byte) *corev1.ConfigMap {
	labels := make(map[string]string, len(sh.labels)+2)
	for k, v := range sh.labels {
		labels[k] = v
	}
	labels[LabelBatch], labels[LabelResults] = s.owner.Name, "true"
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: sh.name, Namespace: s.ns, ResourceVersion: sh.rv,
			Labels: labels, Annotations: sh.annotations,
			OwnerReferences: []metav1.OwnerReference{s.owner},
		},
		Data: map[string]string{DataKey: string(data)},
	}
}
