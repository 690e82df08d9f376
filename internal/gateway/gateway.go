// Package gateway lets any pod call the providers through llmquota, in a
// provider's own dialect, with its ServiceAccount token, under the same
// quota as the batches. Each call is authenticated (TokenReview),
// authorized (SubjectAccessReview: verb use on llmproviders/<name>), given
// quota by the leader manager's authority (the interactive lane, ahead of
// batch items), sent with the provider's key from its Secret, and settled
// from the answer's usage. The caller's token is never forwarded, and the
// provider's key appears in no answer, log or metric.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/utils/clock"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/kubeauth"
	"github.com/llmquota/llmquota/internal/provider"
	"github.com/llmquota/llmquota/internal/ratewindow"
)

// Defaults of a call.
const (
	// DefaultMaxWait is how long a call waits for quota when the caller
	// does not say (header MaxWaitHeader).
	DefaultMaxWait = 10 * time.Second
	// DefaultMaxTokens is the output cap sent when a call names none: the
	// budget reserves what is sent, so the cap is always sent.
	DefaultMaxTokens = 4096
	// MaxBodyBytes bounds a request body.
	MaxBodyBytes = 4 << 20
	// callTimeout bounds one upstream call; the authority's grant lease
	// is longer.
	callTimeout = 2 * time.Minute
	// MaxWaitHeader lets a caller shorten or lengthen its wait for quota
	// (a Go duration such as "2s", or seconds), up to maxMaxWait.
	MaxWaitHeader = "X-Llmquota-Max-Wait"
	// RetryAtHeader carries the exact time quota frees on a 429, beside
	// Retry-After's whole seconds.
	RetryAtHeader = "X-Llmquota-Retry-At"
	// LimitedByHeader names what refused a 429: the quota's constraint
	// ("Window/minute", "RetryAfter", "Concurrency", "Budget/daily"...) or
	// "Provider" for the provider's own 429.
	LimitedByHeader = "X-Llmquota-Limited-By"
	// ProviderHeader names the LLMProvider that served an answer: the one
	// the call named, or its fallback (spec.interactive.fallback).
	ProviderHeader = "X-Llmquota-Provider"
	// CacheHeader is "hit" on an answer reused from the cache
	// (spec.interactive.cache), which took no quota and no provider call.
	CacheHeader = "X-Llmquota-Cache"
	maxMaxWait  = 2 * time.Minute
)

// Authenticator authenticates callers and authorizes their calls
// (kubeauth.Reviewer).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (authnv1.UserInfo, error)
	Allowed(ctx context.Context, user authnv1.UserInfo, access kubeauth.Access) (bool, error)
}

// Quota hands out quota (authority.Client).
type Quota interface {
	Acquire(ctx context.Context, req authority.AcquireRequest) (authority.AcquireResponse, error)
}

// Releases takes the releases of grants, and the reports of their writes,
// in the background (authority.Releaser).
type Releases interface {
	Release(req authority.ReleaseRequest)
	Wrote(grant string)
}

// Gateway serves the dialects. Create it with its fields set and serve
// Handler().
type Gateway struct {
	Providers *Providers
	Auth      Authenticator
	Quota     Quota
	Releases  Releases
	Metrics   *Metrics
	// Denials records refused callers as Events on their ServiceAccounts;
	// nil records none.
	Denials *Denials
	// Cache reuses answers at temperature 0 for the providers that enable
	// it; nil reuses none.
	Cache *AnswerCache
	// MaxWait is the default wait for quota; DefaultMaxWait when zero.
	MaxWait time.Duration
	Clock   clock.PassiveClock
	Log     logr.Logger
}

// Handler routes the dialects' paths.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", serve(g, dialect[openAIChatRequest]{g.openAIParse, g.openAIAnswer, openAIStreams, g.openAIStream, g.openAIError}))
	mux.HandleFunc("GET /v1/models", g.openAIModels)
	mux.HandleFunc("POST /anthropic/v1/messages", serve(g, dialect[anthropicRequest]{g.anthropicParse, g.anthropicAnswer, anthropicStreams, g.anthropicStream, g.anthropicError}))
	// Google's SDKs call v1beta by default, and v1 when given a base URL.
	gemini := serve(g, dialect[geminiCall]{g.geminiParse, g.geminiAnswer, geminiStreams, g.geminiStream, g.geminiError})
	mux.HandleFunc("POST /gemini/v1beta/models/{rest...}", gemini)
	mux.HandleFunc("POST /gemini/v1/models/{rest...}", gemini)
	return mux
}

func (g *Gateway) now() time.Time {
	if g.Clock == nil {
		return time.Now()
	}
	return g.Clock.Now()
}

// failure is a call's error, before a dialect shapes it.
type failure struct {
	status    int
	code      string // a machine-readable cause, in the OpenAI style
	message   string
	retryAt   time.Time // on 429s
	limitedBy string    // on 429s: LimitedByHeader
	// limited is true when the provider could not admit the call (no
	// quota, or not running): its fallback may.
	limited bool
}

func (f *failure) Error() string { return f.message }

func fail(status int, code, format string, args ...any) *failure {
	return &failure{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// caller is an authenticated caller.
type caller struct {
	user      authnv1.UserInfo
	namespace string // the ServiceAccount's namespace; empty for other users
}

// authenticate checks the bearer token.
func (g *Gateway) authenticate(r *http.Request, token string) (caller, *failure) {
	user, err := g.Auth.Authenticate(r.Context(), token)
	switch {
	case errors.Is(err, kubeauth.ErrUnauthenticated):
		return caller{}, fail(http.StatusUnauthorized, "invalid_api_key",
			"the bearer token is not a valid ServiceAccount token for audience llmquota.dev: %v", err)
	case err != nil:
		return caller{}, fail(http.StatusServiceUnavailable, "auth_unavailable", "authentication is unavailable: %v", err)
	}
	ns, _, _ := kubeauth.ServiceAccount(user)
	return caller{user: user, namespace: ns}, nil
}

// authorize checks that the caller may use the provider. Both must allow
// it: RBAC (verb use on llmproviders/<name> in group llmquota.dev, the
// caller's permission) and the provider's namespaceSelector (the
// provider's admin's choice of namespaces). RBAC is asked first, so a
// caller without it learns nothing of the provider.
func (g *Gateway) authorize(ctx context.Context, c caller, providerName string) *failure {
	_, f := g.authorized(ctx, c, providerName)
	return f
}

// authorized is authorize, and returns the provider it read, for the call
// to use rather than read it again.
func (g *Gateway) authorized(ctx context.Context, c caller, providerName string) (*llmv1.LLMProvider, *failure) {
	ok, err := g.Auth.Allowed(ctx, c.user, useAccess(providerName))
	switch {
	case err != nil:
		return nil, fail(http.StatusServiceUnavailable, "auth_unavailable", "authorization is unavailable: %v", err)
	case !ok:
		return nil, fail(http.StatusForbidden, "permission_denied",
			"%s may not use provider %q: it needs verb \"use\" on llmproviders/%s in group llmquota.dev", c.user.Username, providerName, providerName)
	}
	lp, f := g.Providers.Get(ctx, providerName)
	if f != nil {
		return nil, f
	}
	return lp, g.Providers.Admits(ctx, lp, c.namespace)
}

func useAccess(providerName string) kubeauth.Access {
	return kubeauth.Access{Verb: "use", Group: "llmquota.dev", Resource: "llmproviders", Name: providerName}
}

// call is one authorized call in no dialect.
type call struct {
	caller   caller
	provider string
	// lp is the provider as authorization read it (the informer cache's
	// object, read-only).
	lp        *llmv1.LLMProvider
	req       provider.Request
	maxTokens int64
	// capDefault is true when the call named no output cap and
	// DefaultMaxTokens is sent.
	capDefault bool
	maxWait    time.Duration
	// waitSaid is true when the caller set maxWait (MaxWaitHeader); else
	// the provider's spec.interactive.maxWaitMilliseconds applies, if set.
	waitSaid bool
}

// label is the provider's metrics label: a provider that exists, never a
// name a caller made up (each would be a time series).
func (c call) label(found bool) string {
	if found {
		return c.provider
	}
	return ""
}

// outcome is what a call brought back.
type outcome struct {
	resp *provider.Response
	// waited is how long the call waited for quota.
	waited time.Duration
	// upstream is how long the provider took.
	upstream time.Duration
	// found is true once the provider was found.
	found bool
	// provider and model served the call: the provider asked, or its
	// fallback, and the model sent to it.
	provider, model string
	// cached is true for an answer reused from the cache.
	cached bool
}

// run acquires quota, sends the call and settles it. With a relay, the
// answer's text goes to it as the provider streams it. The failure is in
// no dialect yet.
func (g *Gateway) run(ctx context.Context, c call, rl *relay) (outcome, *failure) {
	target, f := g.Providers.ClientOf(ctx, c.lp)
	if f != nil {
		return outcome{}, f
	}
	c.req.MaxTokens = int32(c.maxTokens)
	if target.maxWait != nil && !c.waitSaid {
		c.maxWait = *target.maxWait
	}
	key := g.cacheKeyOf(c, target)
	if key != "" {
		resp, hit := g.Cache.get(key, g.now())
		g.Metrics.cacheLookup(c.provider, hit)
		if hit {
			return outcome{found: true, resp: resp, provider: c.provider, model: cmp.Or(c.req.Model, target.defaultModel), cached: true}, nil
		}
	}
	asked := g.now()
	a, f := g.admit(ctx, c, target)
	out := outcome{found: true, waited: g.now().Sub(asked), provider: a.name, model: a.req.Model}
	if f != nil {
		return out, f
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	if !a.endBy.IsZero() { // a standby grant: the call must end while a new leader would still wait for it
		cctx, cancel = withEnd(cctx, cancel, a.endBy)
	}
	if a.reportWrite {
		cctx = g.reportingWrite(cctx, a.grant)
	}
	sent := g.now()
	resp, err := send(cctx, a, out, rl)
	cancel()
	out.upstream = g.now().Sub(sent)
	g.release(a.grant, resp, err)
	if err != nil {
		return out, upstreamFailure(a.name, err)
	}
	out.resp = resp
	if key != "" && a.name == c.provider && resp.Finish() != provider.FinishOther { // a fallback's answer is not this provider's
		g.Cache.put(key, resp, g.now().Add(target.cacheTTL))
	}
	return out, nil
}

// cacheKeyOf is the cache key of a call whose answer may be reused: its
// provider enables the cache, and it asks for temperature 0. "" otherwise.
func (g *Gateway) cacheKeyOf(c call, t target) string {
	if g.Cache == nil || t.cacheTTL == 0 || !zeroTemperature(c.req.Temperature) {
		return ""
	}
	return cacheKey(c, cmp.Or(c.req.Model, t.defaultModel))
}

// send calls the provider: as a stream when the caller asked for one and
// the provider's client can; else whole. A caller that leaves cancels ctx,
// and with it the provider's call.
func send(ctx context.Context, a admitted, out outcome, rl *relay) (*provider.Response, error) {
	s, ok := a.target.client.(provider.Streamer)
	if rl == nil || !ok {
		return a.target.client.Generate(ctx, a.req)
	}
	return s.Stream(ctx, a.req, func(piece string) error { return rl.piece(out, piece) })
}

// admitted is a call a provider granted quota: the provider, its client,
// the request as that provider takes it (its model), and the grant;
// reportWrite says the authority waits for word of its write.
type admitted struct {
	name        string
	target      target
	req         provider.Request
	grant       string
	reportWrite bool
	// endBy is when the call must have ended: set for a call admitted
	// from a standby grant while no authority answered.
	endBy time.Time
}

// withEnd bounds ctx by end too; the cancel returned cancels both.
func withEnd(ctx context.Context, cancel context.CancelFunc, end time.Time) (context.Context, context.CancelFunc) {
	ectx, ecancel := context.WithDeadline(ctx, end)
	return ectx, func() { ecancel(); cancel() }
}

// reportingWrite tells the authority when the call's request is written
// to the provider's connection (httptrace's WroteRequest): the provider has
// a minimum interval, which then counts from the write, not from the grant,
// so time spent between the grant and the write (this replica's load, its
// dial) cannot bring two calls closer at the provider.
func (g *Gateway) reportingWrite(ctx context.Context, grant string) context.Context {
	var once sync.Once
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
		once.Do(func() { g.Releases.Wrote(grant) })
	}})
}

// admit asks the provider for quota, or, when it cannot admit the call at
// once and its spec.interactive.fallback says WhenLimited, its fallback,
// where the call waits as it would have at the provider. A call the
// fallback cannot admit either gets the fallback's refusal.
func (g *Gateway) admit(ctx context.Context, c call, t target) (admitted, *failure) {
	fallback := t.fallback
	var flp *llmv1.LLMProvider
	if fallback != "" {
		var f *failure
		if flp, f = g.authorized(ctx, c.caller, fallback); f != nil {
			fallback = "" // the caller may not use it: it waits here
		}
	}
	wait := c.maxWait
	if fallback != "" {
		wait = 0
	}
	a, f := g.acquire(ctx, c, c.provider, t, wait)
	if f == nil || fallback == "" || !f.limited {
		return a, f
	}
	ft, ff := g.Providers.ClientOf(ctx, flp)
	if ff != nil {
		return a, f
	}
	c.req.Model = "" // the caller's model is one of the provider's: the fallback's default serves
	fa, ff := g.acquire(ctx, c, fallback, ft, c.maxWait)
	if ff != nil && !ff.limited {
		return a, f
	}
	return fa, ff
}

// acquire asks the quota authority for one call to the provider name,
// waiting at most wait. A refusal for quota, or a provider whose
// dispatcher is not running, is a failure marked limited.
func (g *Gateway) acquire(ctx context.Context, c call, name string, t target, wait time.Duration) (admitted, *failure) {
	req := c.req
	req.Model = cmp.Or(req.Model, t.defaultModel)
	if req.Model == "" {
		return admitted{}, fail(http.StatusBadRequest, "model_not_found",
			"provider %q has no default model: name one as %q", name, name+"/<model>")
	}
	grant, err := g.askQuota(ctx, authority.AcquireRequest{Provider: name, Namespace: c.caller.namespace, Model: req.Model,
		InputChars: req.Chars(), MaxTokens: c.maxTokens}, wait, c.maxWait)
	var notServed *authority.NotServedError
	switch {
	case errors.As(err, &notServed):
		f := fail(http.StatusServiceUnavailable, "provider_not_ready",
			"provider %q is not running: see its conditions (kubectl get llmprovider %s)", name, name)
		f.limited = true
		return admitted{}, f
	case err != nil:
		f := fail(http.StatusServiceUnavailable, "quota_unavailable", "no quota authority answered within %v (no manager leads): %v", c.maxWait, err)
		f.retryAt = g.now().Add(leaderRetry)
		return admitted{}, f
	case grant.Reason == ratewindow.ReasonNoEndpoint.String():
		f := fail(http.StatusServiceUnavailable, "no_warm_endpoint",
			"provider %q has no warm server: see its endpoints (kubectl get llmprovider %s -o yaml)", name, name)
		f.limited = true
		return admitted{}, f
	case grant.Reason == ratewindow.ReasonTooLarge.String():
		f := tooLarge(name, c, grant.Window)
		f.limited = true // a fallback's windows may hold it
		return admitted{}, f
	case grant.Grant == "":
		f := fail(http.StatusTooManyRequests, "rate_limit_exceeded", "provider %q has no quota within %v: %s %s",
			name, wait, grant.Reason, grant.Window)
		f.retryAt, f.limitedBy, f.limited = grant.RetryAt, strings.TrimSuffix(grant.Reason+"/"+grant.Window, "/"), true
		return admitted{}, f
	}
	a := admitted{name: name, target: t, req: req, grant: grant.Grant, reportWrite: grant.ReportWrite, endBy: grant.EndBy}
	if t.pool {
		if grant.Endpoint == "" {
			g.Releases.Release(authority.ReleaseRequest{Grant: grant.Grant})
			return admitted{}, fail(http.StatusBadGateway, "upstream_error", "provider %q: the leader named no pool server for the call", name)
		}
		var f *failure
		if a.target.client, f = g.Providers.Endpoint(grant.Endpoint, t.version.numCtx); f != nil {
			g.Releases.Release(authority.ReleaseRequest{Grant: grant.Grant})
			return admitted{}, f
		}
	}
	return a, nil
}

// tooLarge is the refusal of a call whose token cost alone is more than
// the provider's window holds: a 400, since no wait lets it through, that
// says what to send instead.
func tooLarge(provider string, c call, window string) *failure {
	named := ""
	if c.capDefault {
		named = ", the gateway's default since the call named none"
	}
	return fail(http.StatusBadRequest, "tokens_over_limit",
		"the call's token cost (its input, %d characters at about 4 a token, and its output cap, %d tokens%s) is more than the %s window of provider %q holds, "+
			"so no wait lets it through: send a smaller output cap or a shorter input", c.req.Chars(), c.maxTokens, named, window, provider)
}

// leaderRetry is how often a call waiting for quota asks again while no
// quota authority answers.
const leaderRetry = 250 * time.Millisecond

// askQuota asks the quota authority for a grant, waiting at most wait for
// quota. While no authority answers (the leader crashed, and the managers
// elect another), a call that may wait asks again every leaderRetry until
// leaderWait is spent: it waits for a leader as it waits for quota, and its
// grant, from the new leader, is counted like any other. leaderWait is the
// call's own wait even where its wait for quota is shorter (a call with a
// fallback asks its primary without waiting, but the fallback's quota
// comes from the same leader). A provider the authority does not serve is
// answered at once, waiting would not help; unless no authority answered
// before: a new leader starts its providers' dispatchers as it begins to
// serve.
func (g *Gateway) askQuota(ctx context.Context, req authority.AcquireRequest, wait, leaderWait time.Duration) (authority.AcquireResponse, error) {
	start := g.now()
	quotaBy, deadline := start.Add(wait), start.Add(max(wait, leaderWait))
	noLeader := false
	for {
		req.MaxWaitMillis = max(0, quotaBy.Sub(g.now())).Milliseconds()
		grant, err := g.Quota.Acquire(ctx, req)
		var notServed *authority.NotServedError
		left := deadline.Sub(g.now())
		if err == nil || errors.As(err, &notServed) && !noLeader || ctx.Err() != nil || left <= 0 {
			return grant, err
		}
		noLeader = true
		t := time.NewTimer(min(leaderRetry, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return grant, err
		case <-t.C:
		}
	}
}

// release reports a sent call's usage to the authority, in the background:
// the caller's answer does not wait for it.
func (g *Gateway) release(grant string, resp *provider.Response, err error) {
	req := authority.ReleaseRequest{Grant: grant, Sent: true}
	var pe *provider.Error
	switch {
	case err == nil:
		req.InputTokens, req.OutputTokens = resp.InputTokens, resp.OutputTokens
		if rl := resp.RateLimit; rl.RequestsRemaining == 0 {
			req.RetryAt = rl.RequestsReset
		}
	case errors.As(err, &pe):
		req.Class, req.Message, req.RetryAt = string(pe.Class), pe.Message, pe.RetryAt
	default:
		req.Class, req.Message = string(provider.ClassConnection), err.Error()
	}
	g.Releases.Release(req)
}

// upstreamFailure maps a provider's failure to the caller's: the caller's
// own mistakes keep their status, the provider's trouble is a 502/504.
func upstreamFailure(name string, err error) *failure {
	var pe *provider.Error
	if !errors.As(err, &pe) {
		return fail(http.StatusBadGateway, "upstream_error", "provider %q: %v", name, err)
	}
	switch pe.Class {
	case provider.ClassRateLimited:
		f := fail(http.StatusTooManyRequests, "rate_limit_exceeded", "provider %q refused the call for its quota: %s", name, pe.Message)
		f.retryAt, f.limitedBy = pe.RetryAt, "Provider"
		return f
	case provider.ClassBadRequest:
		return fail(http.StatusBadRequest, "invalid_request", "provider %q refused the request: %s", name, pe.Message)
	case provider.ClassContextTooLong:
		return fail(http.StatusBadRequest, "context_length_exceeded", "provider %q: %s", name, pe.Message)
	case provider.ClassTimeout:
		return fail(http.StatusGatewayTimeout, "upstream_timeout", "provider %q did not answer in time", name)
	case provider.ClassAuth:
		return fail(http.StatusBadGateway, "upstream_auth", "provider %q refused llmquota's credentials: see its conditions", name)
	case provider.ClassCanceled:
		return fail(499, "canceled", "the call was canceled")
	}
	return fail(http.StatusBadGateway, "upstream_error", "provider %q failed: %s", name, pe.Message)
}

// maxWait reads the caller's wait for quota from MaxWaitHeader; said is
// false when the caller did not say, and the gateway's default is returned.
func (g *Gateway) maxWait(r *http.Request) (d time.Duration, said bool, f *failure) {
	h := r.Header.Get(MaxWaitHeader)
	if h == "" {
		return cmp.Or(g.MaxWait, DefaultMaxWait), false, nil
	}
	parsed, err := time.ParseDuration(h)
	if err != nil {
		secs, serr := strconv.ParseFloat(h, 64)
		if serr != nil {
			return 0, true, fail(http.StatusBadRequest, "invalid_request", "header %s: %q is neither a duration nor seconds", MaxWaitHeader, h)
		}
		parsed = time.Duration(secs * float64(time.Second))
	}
	if parsed < 0 || parsed > maxMaxWait {
		return 0, true, fail(http.StatusBadRequest, "invalid_request", "header %s: %v is outside 0 to %v", MaxWaitHeader, parsed, maxMaxWait)
	}
	return parsed, true, nil
}

// waitHeaders writes when to come back: on a 429, and on a 503 that
// knows (no quota authority answered: the managers elect a leader).
func waitHeaders(w http.ResponseWriter, f *failure, now time.Time) {
	if f.status == http.StatusTooManyRequests || f.status == http.StatusServiceUnavailable && !f.retryAt.IsZero() {
		retryAfter(w, f, now)
	}
}

// retryAfter writes a 429's Retry-After (whole seconds, rounded up, at
// least 1) and the exact time beside it.
func retryAfter(w http.ResponseWriter, f *failure, now time.Time) {
	at := f.retryAt
	if f.limitedBy != "" {
		w.Header().Set(LimitedByHeader, f.limitedBy)
	}
	if at.IsZero() {
		w.Header().Set("Retry-After", "1")
		return
	}
	wait := at.Sub(now)
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	w.Header().Set(RetryAtHeader, at.UTC().Format(time.RFC3339Nano))
}
