// Package items loads, checks and filters an InferenceBatch's prompt items:
// JSONL parsing with line numbers, exact decimal score filtering (no
// floats), and batch planning. It imports nothing from Kubernetes.
package items

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"strings"
)

// Item is one prompt with its optional pre-score.
type Item struct {
	ID     string
	Prompt string
	// Score is a decimal string; empty means unscored (never filtered).
	Score string
}

// MaxJSONLItems bounds one ConfigMap's items.
const MaxJSONLItems = 200_000

// ParseJSONL reads one item per line: {"id": "...", "prompt": "...",
// "score": 0.25}. The score may be a JSON number or a decimal string. Blank
// lines are skipped. Every problem is reported with its line number; all
// are collected, not just the first.
func ParseJSONL(data []byte) ([]Item, error) { return ReadJSONL(bytes.NewReader(data)) }

// ReadJSONL is ParseJSONL reading from r as it goes (an object streamed
// from object storage): the input is never held whole, only its items.
func ReadJSONL(r io.Reader) ([]Item, error) {
	var out []Item
	n, err := ScanJSONL(r, func(_ int, it Item) error {
		out = append(out, it)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, errors.New("no items")
	}
	return out, nil
}

// ScanJSONL reads items from r as ParseJSONL does, calling each with every
// valid item and its line number, and holds none of them: it keeps only
// the ids seen, to refuse duplicates. It returns how many items it read.
// Problems are collected with their line numbers (the first five, then a
// count); an error from each stops the scan.
func ScanJSONL(r io.Reader, each func(line int, it Item) error) (int, error) {
	var errs []error
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4<<10), 4<<20) // grows for long lines; small for the many streams of small batches
	line, n := 0, 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		var raw struct {
			ID     string          `json:"id"`
			Prompt string          `json:"prompt"`
			Score  json.RawMessage `json:"score"`
		}
		dec := json.NewDecoder(bytes.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&raw); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		it := Item{ID: raw.ID, Prompt: raw.Prompt}
		if len(raw.Score) > 0 && string(raw.Score) != "null" {
			it.Score = strings.Trim(string(raw.Score), `"`)
		}
		if err := Check(it); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		if prev, dup := seen[it.ID]; dup {
			errs = append(errs, fmt.Errorf("line %d: id %q already used on line %d", line, it.ID, prev))
			continue
		}
		seen[it.ID] = line
		if n++; n > MaxJSONLItems {
			return n, fmt.Errorf("line %d: more than %d items", line, MaxJSONLItems)
		}
		if len(errs) == 0 {
			if err := each(line, it); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("line %d: %w", line+1, err))
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more problems", len(errs)-5))
	}
	return n, errors.Join(errs...)
}

// Check validates one item as the CRD schema does for inline items.
func Check(it Item) error {
	switch {
	case it.ID == "":
		return errors.New("missing id")
	case len(it.ID) > 128:
		return fmt.Errorf("id %q is longer than 128 characters", it.ID[:32]+"...")
	case it.Prompt == "":
		return fmt.Errorf("item %q: missing prompt", it.ID)
	}
	if it.Score != "" && !scoreGrammar.MatchString(it.Score) {
		return fmt.Errorf("item %q: score %q is not a decimal between 0 and 1 such as 0.20", it.ID, it.Score)
	}
	return nil
}

// scoreGrammar is the grammar of a score, the same as the CRD's rule for
// api/v1alpha1.Score, so an item is refused or accepted alike inline and in
// JSONL: a plain decimal between 0 and 1 with at most 12 decimals; no
// fractions, exponents or hex floats (test/integration checks both agree).
var scoreGrammar = regexp.MustCompile(`^(0([.][0-9]{1,12})?|1([.]0{1,12})?)$`)

// Filter splits items into those scoring at least minScore, kept in order,
// and those below it. Unscored items are kept. Comparison is exact.
func Filter(all []Item, minScore string) (kept, filtered []Item, err error) {
	keeps, err := Threshold(minScore)
	if err != nil {
		return nil, nil, err
	}
	for _, it := range all {
		ok, err := keeps(it)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			kept = append(kept, it)
		} else {
			filtered = append(filtered, it)
		}
	}
	return kept, filtered, nil
}

// Threshold returns the test Filter applies to one item: true when it
// scores at least minScore or has no score. Comparison is exact.
func Threshold(minScore string) (func(Item) (bool, error), error) {
	threshold := new(big.Rat)
	if minScore != "" {
		if _, ok := threshold.SetString(minScore); !ok {
			return nil, fmt.Errorf("minScore %q is not a number", minScore)
		}
	}
	return func(it Item) (bool, error) {
		if it.Score == "" {
			return true, nil
		}
		s, ok := new(big.Rat).SetString(it.Score)
		if !ok {
			return false, fmt.Errorf("item %q: score %q is not a number", it.ID, it.Score)
		}
		return s.Cmp(threshold) >= 0, nil
	}, nil
}

// Batches returns how many batches of size n items make.
func Batches(items, size int) int {
	if items == 0 || size <= 0 {
		return 0
	}
	return (items + size - 1) / size
}

// Reduction is the filtered share in whole percent, as the original
// report's batch_prefilter log line shows it.
func Reduction(total, filtered int) int {
	if total == 0 {
		return 0
	}
	return (filtered*100 + total/2) / total
}
