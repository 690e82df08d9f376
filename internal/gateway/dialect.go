package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/llmquota/llmquota/internal/provider"
)

// dialect is one API's wire format: how a call is read, answered (whole,
// or as a stream when streams says the caller asked for one) and refused.
type dialect[B any] struct {
	parse   func(r *http.Request) (call, *B, *failure)
	answer  func(w http.ResponseWriter, c call, body *B, resp *provider.Response)
	streams func(body *B) bool
	stream  func(w http.ResponseWriter, c call, body *B) eventStream
	fail    func(w http.ResponseWriter, f *failure)
}

// serve runs one call in a dialect: read it, run it, answer or refuse it,
// and record it in the metrics. A stream that fails after it began ends
// with the dialect's error event, and counts under the failure's status.
func serve[B any](g *Gateway, d dialect[B]) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := g.Metrics.start(g.now())
		c, body, f := d.parse(r)
		var out outcome
		var rl *relay
		if f == nil {
			if d.streams(body) {
				rl = &relay{open: func(out outcome) eventStream { return d.stream(w, served(w, c, out), body) }}
			}
			if out, f = g.run(r.Context(), c, rl); f == nil {
				m.done(c, out, http.StatusOK, g.now())
				if rl != nil {
					rl.finish(out)
					return
				}
				d.answer(w, served(w, c, out), body, out.resp)
				return
			}
		}
		m.done(c, out, f.status, g.now())
		if rl != nil && rl.s != nil {
			rl.s.abort(f)
			return
		}
		d.fail(w, f)
	}
}

// served is the call as its answer names it: the provider and model that
// served it (the one asked, or its fallback), also in ProviderHeader, and
// CacheHeader on a reused answer.
func served(w http.ResponseWriter, c call, out outcome) call {
	w.Header().Set(ProviderHeader, out.provider)
	if out.cached {
		w.Header().Set(CacheHeader, "hit")
	}
	c.provider, c.req.Model = out.provider, out.model
	return c
}

// lastTurn splits a conversation: its last turn, the user's, is the
// prompt; the turns before are the history.
func lastTurn(req *provider.Request, turns []provider.Turn) *failure {
	last := len(turns) - 1
	if last < 0 || turns[last].Assistant {
		return fail(http.StatusBadRequest, "invalid_request", "the last message must be the user's")
	}
	req.Prompt, req.History = turns[last].Text, turns[:last]
	return nil
}

// textContent reads a message's content: a string, or parts of which only
// those of type "text" are taken (partsName names them in errors).
func textContent(raw json.RawMessage, partsName string) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("neither a string nor a list of %s", partsName)
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("%s type %q is not supported (text only)", partsName, p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// begin authenticates a call, decodes its body into body, reads the
// provider and model from model() ("<provider>/<model>" or "<provider>"),
// authorizes the caller for the provider and reads its wait for quota.
// Each dialect then reads the rest of its body.
func (g *Gateway) begin(r *http.Request, body any, model func() string) (call, *failure) {
	who, f := g.authenticate(r, callerToken(r))
	if f != nil {
		return call{}, f
	}
	c := call{caller: who}
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodyBytes)).Decode(body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return c, fail(http.StatusRequestEntityTooLarge, "request_too_large", "the request body is over %d bytes", MaxBodyBytes)
		}
		return c, fail(http.StatusBadRequest, "invalid_json", "the request body is not valid JSON: %v", err)
	}
	name, m, _ := strings.Cut(model(), "/")
	c.provider, c.req.Model = name, m
	if name == "" {
		return c, fail(http.StatusBadRequest, "model_not_found", "model is required, as \"<provider>/<model>\" or \"<provider>\"")
	}
	if c.lp, f = g.authorized(r.Context(), who, name); f != nil {
		if f.status == http.StatusForbidden {
			g.Denials.denied(who, name, f)
		}
		return c, f
	}
	c.maxWait, c.waitSaid, f = g.maxWait(r)
	return c, f
}

// callerToken reads the caller's ServiceAccount token from where its SDK
// puts an API key: Authorization: Bearer (OpenAI), x-api-key (Anthropic)
// or x-goog-api-key (Gemini).
func callerToken(r *http.Request) string {
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return t
	}
	if t := r.Header.Get("X-Api-Key"); t != "" {
		return t
	}
	return r.Header.Get("X-Goog-Api-Key")
}

// maxOutputCap bounds the output cap a call may ask for.
const maxOutputCap = 1 << 20

// setOutputCap reads a call's output cap; DefaultMaxTokens when it names
// none (capDefault then says so, for the errors that name the cap).
func (c *call) setOutputCap(v *int64) *failure {
	switch {
	case v == nil:
		c.maxTokens, c.capDefault = DefaultMaxTokens, true
		return nil
	case *v < 1 || *v > maxOutputCap:
		return fail(http.StatusBadRequest, "invalid_request", "max tokens %d is outside 1 to %d", *v, maxOutputCap)
	}
	c.maxTokens = *v
	return nil
}

// The dialects, for what differs only in words.
type dialectName int

const (
	openai dialectName = iota
	anthropic
	gemini
)

// finishWords are each dialect's words for why an answer ended, by the
// one vocabulary the provider clients map every API's reason to
// (provider.Response.Finish); an "other" reason reads as a stop.
var finishWords = map[dialectName]map[provider.Finish]string{
	openai:    {provider.FinishStop: "stop", provider.FinishLength: "length", provider.FinishSafety: "content_filter"},
	anthropic: {provider.FinishStop: "end_turn", provider.FinishLength: "max_tokens", provider.FinishSafety: "refusal"},
	gemini:    {provider.FinishStop: "STOP", provider.FinishLength: "MAX_TOKENS", provider.FinishSafety: "SAFETY"},
}

// finishWord is why resp ended, in dialect d's word.
func finishWord(d dialectName, resp *provider.Response) string {
	if w, ok := finishWords[d][resp.Finish()]; ok {
		return w
	}
	return finishWords[d][provider.FinishStop]
}
