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
// value (empty when absent), and when that value is one the gateway can
// honour by not sending it.
type field struct {
	name    string
	raw     json.RawMessage
	neutral func(json.RawMessage) bool
}

// refuseUnsupported returns a 400 naming the first field set to a value
// the gateway cannot carry; nil when none is.
func refuseUnsupported(fields ...field) *failure {
	for _, f := range fields {
		if len(f.raw) == 0 || string(f.raw) == "null" || f.neutral != nil && f.neutral(f.raw) {
			continue
		}
		return fail(http.StatusBadRequest, "unsupported_parameter",
			"%s=%s is not supported by the gateway: it sends the provider the messages, the output cap and the temperature only (docs/gateway.md)",
			f.name, abbreviate(f.raw))
	}
	return nil
}

// never: no value but absent or null is neutral.
func never(json.RawMessage) bool { return false }

// number reports whether the value is the number v.
func number(v float64) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		got, err := strconv.ParseFloat(string(bytes.TrimSpace(raw)), 64)
		return err == nil && got == v
	}
}

// oneOf reports whether the value is one of the JSON values given, as
// written compactly.
func oneOf(values ...string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var b bytes.Buffer
		if json.Compact(&b, raw) != nil {
			return false
		}
		for _, v := range values {
			if b.String() == v {
				return true
			}
		}
		return false
	}
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
