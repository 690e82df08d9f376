package authority

import (
	"net/http"
	"time"

	"github.com/llmquota/llmquota/internal/dispatch"
)

// standbyMargin is taken off a standby grant's time to be sent, for the
// call's hop to the provider: the windows count the grant until its
// deadline (dispatch.StandbyFor after the lend) has left them.
const standbyMargin = time.Second

// standby lends standby grants (dispatch.Lend). Each is held for its time
// to be sent and a lease beyond, as a grant is for its call. A call sent
// from one must end within the time a new leader waits for the gateways
// (AdoptWithin) from the lend, so that a new leader which stopped waiting
// for a gateway that could not tell it its calls in flight can no longer
// have one of them running; its time to be sent is at most half of that.
func (s *Server) standby(w http.ResponseWriter, r *http.Request) {
	req, d, ok := s.asked(w, r)
	if !ok {
		return
	}
	grants, _, err := d.Lend(r.Context(), dispatch.Ask{Namespace: req.Namespace, Model: req.Model, InputChars: req.InputChars,
		MaxTokens: req.MaxTokens}, min(req.Standby, MaxStandby))
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: err.Error()})
		return
	}
	use := min(dispatch.StandbyFor, s.adoptWithin()/2) - standbyMargin
	resp := StandbyResponse{Calls: d.StandbyCalls(), UseMillis: use.Milliseconds(), EndMillis: s.adoptWithin().Milliseconds()}
	holder := r.Header.Get(HolderHeader)
	for _, g := range grants {
		resp.Grants = append(resp.Grants, Spare{Grant: s.holdFor(g, holder, dispatch.StandbyFor+s.lease())})
	}
	writeJSON(w, http.StatusOK, resp)
}
