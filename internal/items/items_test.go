package items

import (
	"fmt"
	"strings"
	"testing"
	"testing/quick"
)

func TestParseJSONL(t *testing.T) {
	got, err := ParseJSONL([]byte(`{"id":"a","prompt":"p1","score":0.25}

{"id":"b","prompt":"p2","score":"0.10"}
{"id":"c","prompt":"p3"}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Item{{"a", "p1", "0.25"}, {"b", "p2", "0.10"}, {"c", "p3", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("item %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestParseJSONLReportsLineNumbers(t *testing.T) {
	cases := map[string]struct {
		input string
		want  []string
	}{
		"bad json":      {"{\"id\":\"a\",\"prompt\":\"p\"}\n{not json}\n", []string{"line 2:"}},
		"missing id":    {`{"prompt":"p"}`, []string{"line 1: missing id"}},
		"missing text":  {`{"id":"a"}`, []string{`line 1: item "a": missing prompt`}},
		"duplicate":     {"{\"id\":\"a\",\"prompt\":\"p\"}\n{\"id\":\"a\",\"prompt\":\"q\"}", []string{`line 2: id "a" already used on line 1`}},
		"score range":   {`{"id":"a","prompt":"p","score":1.5}`, []string{`line 1: item "a": score "1.5" is not a decimal between 0 and 1 such as 0.20`}},
		"unknown field": {`{"id":"a","prompt":"p","scor":0.5}`, []string{"line 1:", "unknown field"}},
		"several":       {"{}\n{\"id\":\"x\"}\n", []string{"line 1:", "line 2:"}},
		"empty":         {"\n\n", []string{"no items"}},
	}
	for name, tc := range cases {
		_, err := ParseJSONL([]byte(tc.input))
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not contain %q", name, err, w)
			}
		}
	}
}

func TestFilterIsExact(t *testing.T) {
	all := []Item{{"a", "p", "0.20"}, {"b", "p", "0.1999999999"}, {"c", "p", ""}, {"d", "p", "1"}, {"e", "p", "0.2000001"}}
	kept, filtered, err := Filter(all, "0.20")
	if err != nil {
		t.Fatal(err)
	}
	ids := func(list []Item) (s string) {
		for _, it := range list {
			s += it.ID
		}
		return s
	}
	if ids(kept) != "acde" || ids(filtered) != "b" {
		t.Fatalf("kept %q filtered %q, want acde and b", ids(kept), ids(filtered))
	}
}

// TestFilterPartitions: every item lands in exactly one list, in order.
func TestFilterPartitions(t *testing.T) {
	f := func(scores []uint16, threshold uint16) bool {
		var all []Item
		for i, s := range scores {
			all = append(all, Item{ID: string(rune('a' + i%26)), Prompt: "p", Score: decimal(s % 1001)})
		}
		kept, filtered, err := Filter(all, decimal(threshold%1001))
		if err != nil || len(kept)+len(filtered) != len(all) {
			return false
		}
		for _, it := range kept {
			if it.Score < decimal(threshold%1001) {
				return false
			}
		}
		return true
	}
	if err := quick.Check(f, nil); err != nil {
		t.Fatal(err)
	}
}

// decimal renders n/1000 as "0.nnn" or "1.000", which compare as strings like numbers.
func decimal(n uint16) string {
	if n >= 1000 {
		return "1.000"
	}
	return fmt.Sprintf("0.%03d", n)
}

func TestBatchesAndReduction(t *testing.T) {
	if Batches(41, 5) != 9 || Batches(40, 5) != 8 || Batches(0, 5) != 0 {
		t.Fatal("batch count")
	}
	if Reduction(136, 95) != 70 {
		t.Fatalf("reduction %d, want 70 (the original report's example)", Reduction(136, 95))
	}
}

func FuzzParseJSONL(f *testing.F) {
	f.Add([]byte(`{"id":"a","prompt":"p","score":0.5}`))
	f.Add([]byte("{\n}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ParseJSONL(data)
		if err != nil {
			return
		}
		for _, it := range got {
			if Check(it) != nil {
				t.Fatalf("accepted an invalid item %+v", it)
			}
		}
	})
}
