package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// The gateway sends a provider the conversation, the output cap, the
// temperature and (to Gemini) the thinking budget: the request its
// clients take for batch items too. A caller's field that would change the
// answer, or its shape, in a way those cannot carry (tools, a JSON
// response format, stop sequences, other sampling knobs) is refused with a
// 400 that names it, never dropped: an app asking for JSON must not get
// prose with a 200. A field at its neutral value, which SDKs and
// frameworks send by default (top_p 1, penalties 0, a text format, no stop
// sequences), is accepted; fields that do not touch the answer (metadata,
// user, store, service tier) and fields this list does not know are not
// looked at.

// field is a request field as sent: its name in the dialect, its raw
// value (empty when absent), and the values that change nothing, as
// compact JSON (a number matches any way it is written: 1, 1.0).
type field struct {
	name    string
	raw     json.RawMessage
	neutral []string
}

// The neutral values of the fields the dialects look at, made once: the
// check runs on every call.
var (
	emptyList    = []string{"[]"}
	emptyObject  = []string{"{}"}
	zero         = []string{"0"}
	one          = []string{"1"}
	falseValue   = []string{"false"}
	noStop       = []string{"[]", `""`}
	noToolChoice = []string{`"none"`, `"auto"`}
	noToolUse    = []string{`{"type":"none"}`, `{"type":"auto"}`}
	noThinking   = []string{`{"type":"disabled"}`}
	textFormat   = []string{`{"type":"text"}`}
	textOnly     = []string{`["text"]`}
	textModality = []string{`["TEXT"]`}
	plainText    = []string{`"text/plain"`}
)

// refuseUnsupported returns a 400 naming the first field set to a value
// the gateway cannot carry; nil when none is. It allocates nothing for
// fields that are absent, which most are: it runs on every call.
func refuseUnsupported(fields ...field) *failure {
	for _, f := range fields {
		if len(f.raw) == 0 || string(f.raw) == "null" || isNeutral(f.raw, f.neutral) {
			continue
		}
		return fail(http.StatusBadRequest, "unsupported_parameter",
			"%s=%s is not supported by the gateway: it sends the provider the messages, the output cap and the temperature only (docs/gateway.md)",
			f.name, abbreviate(f.raw))
	}
	return nil
}

// isNeutral reports whether raw is one of the neutral values.
func isNeutral(raw json.RawMessage, neutral []string) bool {
	if len(neutral) == 0 {
		return false
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return false
	}
	got, numErr := strconv.ParseFloat(b.String(), 64)
	for _, v := range neutral {
		if b.String() == v {
			return true
		}
		if want, err := strconv.ParseFloat(v, 64); numErr == nil && err == nil && got == want {
			return true
		}
	}
	return false
}

// abbreviate keeps an error message short whatever was sent.
func abbreviate(raw json.RawMessage) string {
	const most = 80
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	if b.Len() > most {
		return b.String()[:most] + "..."
	}
	return b.String()
}
