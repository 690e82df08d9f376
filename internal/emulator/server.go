package emulator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Record is one request as the emulator saw it.
type Record struct {
	Time time.Time `json:"time"`
	// API is gemini, anthropic, openai or ollama.
	API string `json:"api"`
	// KeyID identifies the API key without revealing it (a hash prefix).
	KeyID      string `json:"keyID"`
	Model      string `json:"model"`
	PromptHash string `json:"promptHash"`
	// Status is the HTTP status answered (0 for a reset connection).
	Status int   `json:"status"`
	Fault  Fault `json:"fault,omitempty"`
	// Admitted is true when the request counted against the key's quota.
	Admitted bool `json:"admitted"`
	// Stream is true when the answer was asked for as an event stream.
	Stream bool `json:"stream,omitempty"`
}

// Server is the emulator. It is an http.Handler.
type Server struct {
	cfg Config
	// realClock is true when cfg.Now is the real clock, so the kernel's
	// arrival stamps read on the same clock.
	realClock bool

	mu       sync.Mutex
	rng      *rand.Rand
	script   int
	admitted map[string][]time.Time // per key: admission times, oldest first
	outputs  tokenWindows           // output tokens, as Anthropic's OTPM counts them
	totals   tokenWindows           // prompt and output tokens, as OpenAI's TPM counts them
	inputs   tokenWindows           // prompt tokens, as Anthropic's ITPM and Gemini's TPM count them
	log      []Record
	// inFlight counts the requests being served now, most the highest
	// inFlight reached: the concurrency the server saw, whoever limited it.
	inFlight, most int
}

// New returns a Server for cfg.
func New(cfg Config) *Server {
	realClock := cfg.Now == nil
	if realClock {
		cfg.Now = time.Now
	}
	if cfg.RetryAfter == 0 {
		cfg.RetryAfter = 2 * time.Second
	}
	if cfg.HangFor == 0 {
		cfg.HangFor = 30 * time.Second
	}
	return &Server{cfg: cfg, realClock: realClock, rng: rand.New(rand.NewPCG(cfg.Seed, 0xe3)), admitted: map[string][]time.Time{},
		outputs: tokenWindows{limits: cfg.OutputTokenLimits, charges: map[string][]*charge{}},
		totals:  tokenWindows{limits: cfg.TokenLimits, charges: map[string][]*charge{}},
		inputs:  tokenWindows{limits: cfg.InputTokenLimits, charges: map[string][]*charge{}}}
}

// Log returns a copy of every request received so far.
func (s *Server) Log() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// MaxInFlight is the most requests the server was serving at once, from
// their arrival to their answer.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most
}

// serving counts a request in flight until the returned func is called.
func (s *Server) serving() func() {
	s.mu.Lock()
	s.inFlight++
	s.most = max(s.most, s.inFlight)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.inFlight--
		s.mu.Unlock()
	}
}

// call is one parsed request.
type call struct {
	api       dialect
	key       string
	model     string
	prompt    string
	maxTokens int
	// thinkingBudget is Gemini's thinkingConfig.thinkingBudget, if sent.
	thinkingBudget *int
	// invalid is why the API refuses the request as the real one would
	// (a field the model does not take), with 400.
	invalid string
	// stream is true when the answer is asked for as an event stream;
	// streamUsage when the stream is to end with the usage (OpenAI's
	// stream_options.include_usage; Anthropic and Gemini always send it).
	stream, streamUsage bool
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := s.arrival(r) // before the body is read and decoded, which a loaded machine makes slow
	defer s.serving()()
	c, ok := parse(r)
	if !ok {
		http.NotFound(w, r)
		return
	}
	rec := Record{Time: arrived, API: c.api.name(), KeyID: keyID(c.key), Model: c.model, PromptHash: hash(c.prompt), Stream: c.stream}
	status, fault, retryAfter, used := s.decide(c, rec.Time)
	if c.invalid != "" && status == http.StatusOK {
		status, fault = http.StatusBadRequest, FaultNone
	}
	rec.Status, rec.Fault, rec.Admitted = status, fault, status != http.StatusTooManyRequests && status != http.StatusUnauthorized && status != http.StatusBadRequest
	if fault == FaultReset {
		rec.Status = 0
	}
	s.mu.Lock()
	s.log = append(s.log, rec)
	if s.cfg.OnRequest != nil {
		s.cfg.OnRequest(rec)
	}
	s.mu.Unlock()

	if s.cfg.Latency > 0 && !sleep(r.Context(), s.cfg.Latency) {
		return
	}
	switch {
	case fault == FaultHang:
		sleep(r.Context(), s.cfg.HangFor)
		c.api.writeError(w, http.StatusGatewayTimeout, 0)
	case fault == FaultReset:
		reset(w)
	case fault == FaultCut:
		s.cut(w, c)
	case fault == FaultMalformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"candidates": [{"content": {"parts": [{"text": "trunc`))
	case c.invalid != "" && status == http.StatusBadRequest:
		c.api.writeInvalid(w, c.invalid)
	case status != http.StatusOK:
		c.api.writeError(w, status, retryAfter)
	case c.stream:
		s.rateLimitHeaders(w, c)
		s.writeStream(r.Context(), w, c, answerText(c), promptTokens(c.prompt), answerTokens(c))
		used(answerTokens(c).total())
	default:
		s.rateLimitHeaders(w, c)
		c.api.writeSuccess(w, c, answerText(c), promptTokens(c.prompt), answerTokens(c))
		used(answerTokens(c).total())
	}
}

// decide applies authentication, the quota and the faults, in that order.
// used corrects an admitted request's output-token charge once it is
// answered; it does nothing for one that is not.
func (s *Server) decide(c call, now time.Time) (status int, fault Fault, retryAfter time.Duration, used func(int)) {
	used = func(int) {}
	if c.prompt == "" || c.model == "" {
		return http.StatusBadRequest, FaultNone, 0, used
	}
	if c.api != ollama && (c.key == "" || (len(s.cfg.Keys) > 0 && !slices.Contains(s.cfg.Keys, c.key))) {
		return http.StatusUnauthorized, FaultNone, 0, used
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	tokensWait, admitTokens := s.tokenCharges(c, now)
	if wait := max(s.quotaWait(c.key, now), tokensWait); wait > 0 {
		return http.StatusTooManyRequests, FaultNone, wait, used
	}
	fault = s.nextFault()
	if fault == FaultRateLimit {
		return http.StatusTooManyRequests, fault, s.cfg.RetryAfter, used
	}
	s.admitted[c.key] = append(s.admitted[c.key], now)
	used = admitTokens()
	switch fault {
	case FaultServerError:
		return http.StatusInternalServerError, fault, 0, used
	case FaultUnavailable:
		return http.StatusServiceUnavailable, fault, 0, used
	case FaultOverloaded:
		return 529, fault, 0, used
	}
	return http.StatusOK, fault, 0, used
}

// quotaWait returns how long until every window has room for one more
// request from key, 0 if it has room now. It keeps only what can matter.
func (s *Server) quotaWait(key string, now time.Time) time.Duration {
	times := s.admitted[key]
	longest := time.Duration(0)
	var wait time.Duration
	for _, l := range s.cfg.Limits {
		longest = max(longest, l.Period)
		inWindow := 0
		for _, t := range times {
			if t.After(now.Add(-l.Period)) {
				inWindow++
			}
		}
		if inWindow >= l.Requests {
			// The (inWindow-Requests+1)-th oldest in the window must leave.
			leaving := times[len(times)-inWindow+(inWindow-l.Requests)]
			wait = max(wait, leaving.Add(l.Period).Sub(now))
		}
	}
	for len(times) > 0 && !times[0].After(now.Add(-longest)) {
		times = times[1:]
	}
	s.admitted[key] = times
	return wait
}

func (s *Server) nextFault() Fault {
	if s.script < len(s.cfg.Script) {
		s.script++
		return s.cfg.Script[s.script-1]
	}
	f := s.cfg.Faults
	p := s.rng.Float64()
	for _, c := range []struct {
		rate  float64
		fault Fault
	}{{f.RateLimit, FaultRateLimit}, {f.ServerError, FaultServerError}, {f.Unavailable, FaultUnavailable},
		{f.Overloaded, FaultOverloaded}, {f.Hang, FaultHang}, {f.Reset, FaultReset}, {f.Malformed, FaultMalformed}, {f.Cut, FaultCut}} {
		if p < c.rate {
			return c.fault
		}
		p -= c.rate
	}
	return FaultNone
}

// rateLimitHeaders tells the client what remains of its first window, as
// Anthropic and OpenAI do.
func (s *Server) rateLimitHeaders(w http.ResponseWriter, c call) {
	if len(s.cfg.Limits) == 0 {
		return
	}
	l := s.cfg.Limits[0]
	now := s.cfg.Now()
	s.mu.Lock()
	used, oldest := 0, now
	for _, t := range s.admitted[c.key] {
		if t.After(now.Add(-l.Period)) {
			if used == 0 {
				oldest = t
			}
			used++
		}
	}
	s.mu.Unlock()
	c.api.writeLimits(w.Header(), l.Requests, l.Requests-used, oldest.Add(l.Period).Sub(now), now)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// reset closes the connection with a TCP RST, as a crashed proxy would.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func keyID(key string) string {
	if key == "" {
		return ""
	}
	return hash(key)[:12]
}

// answerText is the answer to a call: deterministic per prompt.
func answerText(c call) string { return "emulated answer " + hash(c.prompt)[:16] }

// promptTokens approximates a tokenizer: one token per 4 characters.
func promptTokens(prompt string) int { return max(1, len(prompt)/4) }

// answer is an answer's output: visible tokens, thinking tokens (billed
// as output), and whether the output cap cut it.
type answer struct {
	out, thoughts int
	cut           bool
}

// total is the output billed: the answer and its thinking.
func (a answer) total() int { return a.out + a.thoughts }

// thinks reports whether the model spends thinking tokens as the real one
// does: Gemini 2.5 and later, OpenAI's reasoning models.
func (c call) thinks() bool {
	m := strings.ToLower(c.model)
	switch c.api {
	case gemini:
		return strings.Contains(m, "gemini-2.5") || strings.Contains(m, "gemini-3")
	case openai:
		return openAIReasoning(m)
	}
	return false
}

// answerTokens is deterministic per prompt: a visible answer of 8 to 31
// tokens, and for a thinking model three times that in thinking (at most
// Gemini's thinkingBudget; none with a budget of 0). The cap (maxTokens,
// which thinking counts against as on the real APIs) cuts thinking first,
// then the answer.
func answerTokens(c call) answer {
	a := answer{out: 8 + int(hash(c.prompt)[0])%24}
	if c.thinks() {
		a.thoughts = 3 * a.out
		if b := c.thinkingBudget; b != nil && *b >= 0 {
			a.thoughts = min(a.thoughts, *b)
		}
	}
	if c.maxTokens > 0 && a.out+a.thoughts > c.maxTokens {
		a.cut = true
		a.thoughts = min(a.thoughts, c.maxTokens)
		a.out = c.maxTokens - a.thoughts
	}
	return a
}

func decodeJSON(r *http.Request, v any) bool {
	return json.NewDecoder(http.MaxBytesReader(nil, r.Body, 8<<20)).Decode(v) == nil
}

func bearer(h string) string {
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return ""
	}
	return token
}
