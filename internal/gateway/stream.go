package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/llmquota/llmquota/internal/provider"
)

// eventStream writes one answer as a dialect's server-sent events. Its
// constructor writes the opening; text writes a piece at once; end writes
// the finish and the usage; abort ends a stream that failed after it
// began with the dialect's error event (its HTTP status is 200 already).
type eventStream interface {
	text(piece string) error
	end(resp *provider.Response)
	abort(f *failure)
}

// relay passes a streamed answer to its caller as the provider sends it.
// It opens the dialect's stream at the first piece, so a call that fails
// before any (no quota, the provider's 429) still gets the HTTP error of
// its own status.
type relay struct {
	open    func(out outcome) eventStream
	s       eventStream
	relayed bool
}

// piece writes one piece of text; an error is the caller's connection's,
// and ends the upstream call.
func (r *relay) piece(out outcome, p string) error {
	if r.s == nil {
		r.s = r.open(out)
	}
	r.relayed = r.relayed || p != ""
	return r.s.text(p)
}

// finish ends a call that succeeded: a provider client that does not
// stream gave its whole answer at the end, in one piece.
func (r *relay) finish(out outcome) {
	if !r.relayed {
		_ = r.piece(out, out.resp.Text)
	}
	r.s.end(out.resp)
}

// startEvents answers 200 with a server-sent event stream.
func startEvents(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no") // no proxy in between may hold the pieces back
	w.WriteHeader(http.StatusOK)
}

// writeEvent writes one event (named, unless name is empty) and flushes
// it to the caller at once.
func writeEvent(w http.ResponseWriter, name string, v any) error {
	var b bytes.Buffer
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	b.WriteString("data: ")
	_ = json.NewEncoder(&b).Encode(v) // ends with a newline
	b.WriteString("\n")
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}
