// Package authority is the leader manager's quota service for gateway
// replicas. The leader's dispatchers stay the one place a provider's
// windows, interval, tokens, concurrency and budgets are decided; a gateway
// asks for its calls' grants (acquire), sends each call itself, and reports
// what it cost (release); under most limits an acquire also brings spare
// grants that the gateway's next calls use without asking (Spares), and a
// provider may lend standby grants that serve calls while no manager leads
// (Standby; the leader's side in lend.go). A grant not released within its
// lease is reclaimed, so a gateway that dies holding quota wastes at most
// its lease, and a gateway that restarts gives back its previous process's
// grants when it checks in. Each gateway keeps
// its calls in flight (Ledger) and tells every new leader of them
// (CheckIns), which counts them before it admits anything (adopt.go).
// docs/gateway.md says why one admission per call rather than leased
// blocks.
package authority

import "time"

// Paths of the service.
const (
	AcquirePath = "/quota/v1/acquire"
	ReleasePath = "/quota/v1/release"
	// PingPath answers 204 to an authorized gateway: the leader serves.
	PingPath = "/quota/v1/ping"
	// WrotePath takes the word that a grant's request reached the
	// connection (AcquireResponse.ReportWrite).
	WrotePath = "/quota/v1/wrote"
	// CheckinPath takes a gateway's calls in flight (CheckinRequest).
	CheckinPath = "/quota/v1/checkin"
	// StandbyPath lends standby grants (AcquireRequest.Standby,
	// StandbyResponse).
	StandbyPath = "/quota/v1/standby"
)

// HolderHeader names the gateway process that sends a request,
// "namespace/pod/instance" (Client.Holder): the grants it is given are
// held by that process, and a restarted one's check-in ends them.
const HolderHeader = "X-Llmquota-Holder"

// EpochHeader names the leader's term on every answer of the service: a
// gateway that sees one it has not checked in with checks in.
const EpochHeader = "X-Llmquota-Authority-Epoch"

// OpenGrant is a call in flight: its grant, and what it was granted for.
type OpenGrant struct {
	Grant     string `json:"grant"`
	Provider  string `json:"provider"`
	Namespace string `json:"namespace"`
	Model     string `json:"model,omitempty"`
	// Endpoint is the pool server the call went to; empty for a provider
	// of one endpoint.
	Endpoint string `json:"endpoint,omitempty"`
}

// CheckinRequest tells a new leader a gateway pod's calls in flight.
type CheckinRequest struct {
	// Pod is the gateway's pod, "namespace/name" (Server.Gateways).
	Pod    string      `json:"pod"`
	Grants []OpenGrant `json:"grants"`
}

// AcquireRequest asks for quota for one interactive call.
type AcquireRequest struct {
	Provider  string `json:"provider"`
	Namespace string `json:"namespace"`
	// Model is the model the call names, for the model's own limits.
	Model string `json:"model,omitempty"`
	// InputChars is the length of everything the call sends as input.
	InputChars int `json:"inputChars"`
	// MaxTokens is the output cap the call sends.
	MaxTokens int64 `json:"maxTokens"`
	// MaxWaitMillis bounds the wait for quota.
	MaxWaitMillis int64 `json:"maxWaitMillis"`
	// Prefetch asks for up to this many spare grants for the gateway's
	// next calls of this namespace and model, of this cost at most
	// (dispatch.Ask.Prefetch); at most MaxPrefetch.
	Prefetch int `json:"prefetch,omitempty"`
	// Standby asks StandbyPath for up to this many standby grants for
	// calls of this namespace and model, of this cost at most; at most
	// MaxStandby.
	Standby int `json:"standby,omitempty"`
}

// MaxStandby bounds the standby grants one request asks for.
const MaxStandby = 64

// StandbyResponse lends standby grants: calls the gateway may send while
// no authority answers it (dispatch.Lend).
type StandbyResponse struct {
	Grants []Spare `json:"grants,omitempty"`
	// Calls is how many standby grants the provider lends a gateway for
	// one namespace and model (its spec.interactive.standbyCalls): 0 lends
	// none.
	Calls int `json:"calls"`
	// UseMillis is how long after the request was sent a grant may still
	// be sent; EndMillis, how long after it a call sent from one must have
	// ended: a new leader waits no longer for a gateway that cannot tell
	// it its calls in flight.
	UseMillis int64 `json:"useMillis,omitempty"`
	EndMillis int64 `json:"endMillis,omitempty"`
	// Epoch, set by the client from the answer (EpochHeader), is the term
	// of the leader that lent the grants.
	Epoch string `json:"-"`
}

// MaxPrefetch bounds the spares one acquire asks for.
const MaxPrefetch = 256

// Spare is a spare grant: its id, and the pool server its call must go to
// (empty for a provider of one endpoint).
type Spare struct {
	Grant    string `json:"grant"`
	Endpoint string `json:"endpoint,omitempty"`
}

// AcquireResponse is a grant (Grant set) or a refusal (Reason set).
type AcquireResponse struct {
	Grant string `json:"grant,omitempty"`
	// LeaseMillis is how long the grant is held before it is reclaimed.
	LeaseMillis int64 `json:"leaseMillis,omitempty"`
	// Endpoint is the base URL the call must go to: the warm server of a
	// pool (an Ollama pod) the leader chose; empty for a provider of one
	// endpoint.
	Endpoint string `json:"endpoint,omitempty"`
	// ReportWrite asks the gateway to post WroteRequest as soon as the
	// call's request is written to the provider's connection: the provider
	// has a minimum interval, which counts from the write, and nothing more
	// is admitted until then (or until WriteDeadline).
	ReportWrite bool `json:"reportWrite,omitempty"`
	// Spares are the spare grants given with this one (Prefetch); each
	// must be sent within UseMillis of the acquire's request, or released
	// unsent.
	Spares []Spare `json:"spares,omitempty"`
	// UseMillis is how long the provider's spares may be held (zero: the
	// provider gives none, and each call asks for its own grant).
	UseMillis int64 `json:"useMillis,omitempty"`
	// EndBy, set by the gateway itself on a grant from its standby
	// (Standby), is when the call must have ended.
	EndBy time.Time `json:"-"`
	// Reason names the constraint that refused (ratewindow.Reason), Window
	// the window or budget, RetryAt when it frees (zero when no wait
	// alone frees it).
	Reason  string    `json:"reason,omitempty"`
	Window  string    `json:"window,omitempty"`
	RetryAt time.Time `json:"retryAt,omitzero"`
}

// ReleaseRequest ends a grant.
type ReleaseRequest struct {
	Grant string `json:"grant"`
	// Sent is false when the call was never sent (the caller left, or the
	// request could not be built).
	Sent bool `json:"sent"`
	// Class is the failure class of a sent call (provider.Class), empty
	// when it succeeded.
	Class   string `json:"class,omitempty"`
	Message string `json:"message,omitempty"`
	// InputTokens and OutputTokens are the answer's usage.
	InputTokens  int64 `json:"inputTokens,omitempty"`
	OutputTokens int64 `json:"outputTokens,omitempty"`
	// RetryAt is when the provider said to come back (a 429's Retry-After,
	// or the reset of an exhausted rate-limit header).
	RetryAt time.Time `json:"retryAt,omitzero"`
}

// WroteRequest says a grant's request reached the provider's connection.
type WroteRequest struct {
	Grant string `json:"grant"`
}

// ReleaseBatch ends many grants in one request: a gateway sends the
// releases of its calls together, every few milliseconds.
type ReleaseBatch struct {
	Releases []ReleaseRequest `json:"releases"`
}

// errorBody is the shape of the service's own errors.
type errorBody struct {
	Error string `json:"error"`
}
