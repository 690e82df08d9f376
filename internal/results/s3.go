package results

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/utils/clock"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/objectstore"
)

// MaxPartBytes bounds one result part in object storage.
const MaxPartBytes = 8 << 20

// S3FlushPolicy writes object-storage parts: large ones, since a part
// costs no API-server write, but the batch's status follows each part.
var S3FlushPolicy = FlushPolicy{Interval: 30 * time.Second, Items: 10_000}

// ManifestName is the manifest's name under the prefix.
const ManifestName = "manifest.json"

var partName = regexp.MustCompile(`^part-(\d{5,})\.jsonl$`)

// S3Store is one batch's results in S3-compatible object storage: each
// Flush uploads the waiting results as new parts (<prefix>part-NNNNN.jsonl,
// each at most MaxPartBytes; a part is written whole or not at all), then
// rewrites <prefix>manifest.json, which lists the parts and counts.
type S3Store struct {
	ledger
	s3     *objectstore.Store
	prefix string
	// parts are the parts written, in order, with their results.
	parts []Part
	// partBytes is MaxPartBytes; tests lower it.
	partBytes int
	// stale is true while the manifest lacks a part written.
	stale bool
}

var _ Sink = (*S3Store)(nil)

// Part is one result object.
type Part struct {
	Key   string `json:"key"`
	Items int32  `json:"items"`
}

// Manifest describes a batch's results in object storage.
type Manifest struct {
	// Parts are the result objects, in order.
	Parts []Part `json:"parts"`
	// Counts are the results by status.
	Counts map[string]int32 `json:"counts"`
	// UpdateTime is when the manifest was written.
	UpdateTime time.Time `json:"updateTime"`
}

// LoadS3 reads back the parts under prefix (a restarted manager) and returns
// a store that writes more there.
func LoadS3(ctx context.Context, s3 *objectstore.Store, prefix string, c clock.PassiveClock) (*S3Store, error) {
	s := &S3Store{ledger: newLedger(c), s3: s3, prefix: prefix, partBytes: MaxPartBytes}
	keys, err := s3.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		if !strings.HasPrefix(key, prefix) || !partName.MatchString(key[len(prefix):]) {
			continue // not a part of this prefix (a deeper key, the manifest)
		}
		r, err := s3.Get(ctx, key, "")
		if err != nil {
			return nil, err
		}
		p := Part{Key: key}
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxOutputBytes*2)
		for sc.Scan() {
			var l idLine
			if json.Unmarshal(sc.Bytes(), &l) == nil && l.ID != "" && s.record(l) {
				p.Items++
			}
		}
		_ = r.Close()
		if err := r.Err(); err != nil {
			return nil, fmt.Errorf("reading results part %s: %w", s3.URL(key), err)
		}
		s.parts = append(s.parts, p)
	}
	return s, nil
}

// nextPart names the part after the last one written.
func (s *S3Store) nextPart() string {
	n := 0
	if len(s.parts) > 0 {
		m := partName.FindStringSubmatch(strings.TrimPrefix(s.parts[len(s.parts)-1].Key, s.prefix))
		last, _ := strconv.Atoi(m[1])
		n = last + 1
	}
	return fmt.Sprintf("%spart-%05d.jsonl", s.prefix, n)
}

// Flush uploads the waiting results as parts, then the manifest. A part
// that fails leaves its results waiting, not counted done; a manifest that
// fails is written by the next Flush.
func (s *S3Store) Flush(ctx context.Context) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored := 0
	for len(s.pending) > 0 {
		var data []byte
		n := 0
		for _, r := range s.pending {
			if n > 0 && len(data)+len(r.line)+1 > s.partBytes {
				break
			}
			data = append(append(data, r.line...), '\n')
			n++
		}
		key := s.nextPart()
		if err := s.s3.Put(ctx, key, data, "application/x-ndjson"); err != nil {
			return stored, fmt.Errorf("writing results part: %w", err)
		}
		p := Part{Key: key}
		for _, r := range s.pending[:n] {
			if s.record(r.idLine) {
				p.Items++
			}
			delete(s.pendingID, r.ID)
		}
		s.parts = append(s.parts, p)
		s.stale = true
		stored += n
		clear(s.pending[:n])
		s.pending = s.pending[n:]
	}
	s.pending = nil
	if !s.stale {
		return stored, nil
	}
	if err := s.writeManifest(ctx); err != nil {
		return stored, err
	}
	s.stale = false
	return stored, nil
}

func (s *S3Store) writeManifest(ctx context.Context) error {
	counts := make(map[string]int32, len(s.counts))
	for k, v := range s.counts {
		counts[k] = v
	}
	data, err := json.MarshalIndent(Manifest{Parts: slices.Clone(s.parts), Counts: counts, UpdateTime: s.clock.Now().UTC()}, "", "  ")
	if err != nil {
		return err
	}
	if err := s.s3.Put(ctx, s.prefix+ManifestName, data, "application/json"); err != nil {
		return fmt.Errorf("writing results manifest: %w", err)
	}
	return nil
}

// References names the manifest, with every stored result counted.
func (s *S3Store) References() []llmv1.ResultReference {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.parts) == 0 {
		return nil
	}
	n := int32(0)
	for _, p := range s.parts {
		n += p.Items
	}
	return []llmv1.ResultReference{{Kind: "S3", Name: s.s3.URL(s.prefix + ManifestName), Items: n}}
}
