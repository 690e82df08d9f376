package gateway

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRefuseUnsupported: a field is refused only when set to a value that
// is not neutral, however the neutral value is written; the refusal names
// the field and a short form of the value.
func TestRefuseUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       field
		refused bool
	}{
		{"absent", field{"top_p", nil, []string{"1"}}, false},
		{"null", field{"top_p", json.RawMessage("null"), []string{"1"}}, false},
		{"one", field{"top_p", json.RawMessage("1"), []string{"1"}}, false},
		{"one written 1.0", field{"top_p", json.RawMessage(" 1.0 "), []string{"1"}}, false},
		{"below one", field{"top_p", json.RawMessage("0.9"), []string{"1"}}, true},
		{"a string", field{"top_p", json.RawMessage(`"1"`), []string{"1"}}, true},
		{"text format with spaces", field{"response_format", json.RawMessage(`{ "type" : "text" }`), []string{`{"type":"text"}`}}, false},
		{"json format", field{"response_format", json.RawMessage(`{"type":"json_object"}`), []string{`{"type":"text"}`}}, true},
		{"no tools", field{"tools", json.RawMessage("[ ]"), []string{"[]"}}, false},
		{"never neutral", field{"audio", json.RawMessage(`{}`), nil}, true},
	} {
		f := refuseUnsupported(field{"n", nil, nil}, tc.f)
		if (f != nil) != tc.refused {
			t.Errorf("%s: refused %v, want %v", tc.name, f, tc.refused)
		}
		if f != nil && (f.status != 400 || f.code != "unsupported_parameter" || !strings.HasPrefix(f.message, tc.f.name+"=")) {
			t.Errorf("%s: %+v", tc.name, f)
		}
	}
	long := json.RawMessage(`[{"type":"function","function":{"name":"` + strings.Repeat("x", 500) + `"}}]`)
	if f := refuseUnsupported(field{"tools", long, []string{"[]"}}); f == nil || len(f.message) > 300 {
		t.Fatalf("a long value is not cut short: %v", f)
	}
}

// TestTheCheckAllocatesNothing: the check runs on every call, and a call
// that sets none of the fields it looks at (most calls) costs it no
// allocation in any dialect.
func TestTheCheckAllocatesNothing(t *testing.T) {
	var o openAIChatRequest
	var a anthropicRequest
	var g geminiRequest
	for name, check := range map[string]func() *failure{"OpenAI": o.unsupported, "Anthropic": a.unsupported, "Gemini": g.unsupported} {
		if n := testing.AllocsPerRun(100, func() { _ = check() }); n != 0 {
			t.Errorf("%s: %v allocations a call", name, n)
		}
	}
}
