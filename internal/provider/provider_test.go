package provider

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

const testKey = "sk-test-0123456789abcdef"

// canned is a recorded response of a real API: status, headers, body.
type canned struct {
	status int
	header map[string]string
	body   string
}

func serve(t *testing.T, c canned, check func(*http.Request)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if check != nil {
			check(r)
		}
		for k, v := range c.header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(c.status)
		_, _ = w.Write([]byte(c.body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func client(t *testing.T, typ Type, endpoint string) Client {
	t.Helper()
	c, err := New(Config{Type: typ, Endpoint: endpoint, APIKey: testKey, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var req = Request{Model: "m", Prompt: "Classify: ACME beats estimates.", System: "Be brief.", MaxTokens: 64, Temperature: "0.2"}

// outcome is what a call must produce.
type outcome struct {
	text     string
	in, out  int64
	finish   string
	class    Class
	retryAt  time.Duration // since now; 0 means none expected
	remainin int64         // RateLimit.RequestsRemaining; 0 means not checked
}

func check(t *testing.T, resp *Response, err error, want outcome) {
	t.Helper()
	if want.class == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		if resp.Text != want.text || resp.InputTokens != want.in || resp.OutputTokens != want.out || resp.FinishReason != want.finish {
			t.Fatalf("got %+v, want %+v", resp, want)
		}
		if want.remainin != 0 && resp.RateLimit.RequestsRemaining != want.remainin {
			t.Fatalf("remaining %d, want %d", resp.RateLimit.RequestsRemaining, want.remainin)
		}
		return
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %v (%T), want a *provider.Error of class %s", err, err, want.class)
	}
	if pe.Class != want.class {
		t.Fatalf("class %s, want %s (%v)", pe.Class, want.class, pe)
	}
	if want.retryAt != 0 && !pe.RetryAt.Equal(now.Add(want.retryAt)) {
		t.Fatalf("retryAt %v, want now+%v", pe.RetryAt.Sub(now), want.retryAt)
	}
	if strings.Contains(pe.Error(), testKey) {
		t.Fatalf("error leaks the API key: %v", pe)
	}
}

func TestGemini(t *testing.T) {
	cases := map[string]struct {
		reply canned
		want  outcome
	}{
		"success": {canned{200, nil, `{"candidates":[{"content":{"parts":[{"text":"bullish"},{"text":" - beat"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":3,"totalTokenCount":15},"modelVersion":"gemini-2.5-flash"}`},
			outcome{text: "bullish - beat", in: 12, out: 3, finish: "STOP"}},
		"quota with RetryInfo": {canned{429, nil, `{"error":{"code":429,"message":"You exceeded your current quota","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"37s"}]}}`},
			outcome{class: ClassRateLimited, retryAt: 37 * time.Second}},
		"quota in an array, no delay": {canned{429, nil, `[{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}]`},
			outcome{class: ClassRateLimited}},
		"bad key": {canned{400, nil, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`},
			outcome{class: ClassAuth}},
		"prompt too long": {canned{400, nil, `{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}`},
			outcome{class: ClassContextTooLong}},
		"overloaded": {canned{503, nil, `{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}`},
			outcome{class: ClassServerError}},
		"internal": {canned{500, nil, `{"error":{"code":500,"message":"An internal error has occurred.","status":"INTERNAL"}}`},
			outcome{class: ClassServerError}},
		"blocked prompt": {canned{200, nil, `{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":5}}`},
			outcome{class: ClassBadRequest}},
		"malformed": {canned{200, nil, `{"candidates": [`}, outcome{class: ClassServerError}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			url := serve(t, tc.reply, func(r *http.Request) {
				if r.URL.Path != "/v1beta/models/m:generateContent" || r.Header.Get("x-goog-api-key") != testKey || r.URL.RawQuery != "" {
					t.Errorf("request %s %q key=%q", r.URL.Path, r.URL.RawQuery, r.Header.Get("x-goog-api-key"))
				}
			})
			resp, err := client(t, Gemini, url).Generate(context.Background(), req)
			check(t, resp, err, tc.want)
		})
	}
}

func TestAnthropic(t *testing.T) {
	limits := map[string]string{
		"anthropic-ratelimit-requests-limit":     "50",
		"anthropic-ratelimit-requests-remaining": "49",
		"anthropic-ratelimit-requests-reset":     "2026-11-26T09:00:30Z",
	}
	cases := map[string]struct {
		reply canned
		want  outcome
	}{
		"success": {canned{200, limits, `{"id":"msg_01","type":"message","role":"assistant","content":[{"type":"text","text":"bearish"}],"model":"claude-haiku-4-5","stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":20,"output_tokens":2}}`},
			outcome{text: "bearish", in: 20, out: 2, finish: "end_turn", remainin: 49}},
		"rate limited with retry-after": {canned{429, map[string]string{"retry-after": "12"}, `{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your per-minute rate limit"}}`},
			outcome{class: ClassRateLimited, retryAt: 12 * time.Second}},
		"rate limited, reset header only": {canned{429, limits, `{"type":"error","error":{"type":"rate_limit_error","message":"rate limited"}}`},
			outcome{class: ClassRateLimited, retryAt: 30 * time.Second}},
		"overloaded 529": {canned{529, nil, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
			outcome{class: ClassServerError}},
		"auth": {canned{401, nil, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`},
			outcome{class: ClassAuth}},
		"prompt too long": {canned{400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}`},
			outcome{class: ClassContextTooLong}},
		"bad request": {canned{400, nil, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}`},
			outcome{class: ClassBadRequest}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			url := serve(t, tc.reply, func(r *http.Request) {
				if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != testKey || r.Header.Get("anthropic-version") == "" {
					t.Errorf("request %s headers %v", r.URL.Path, r.Header)
				}
			})
			resp, err := client(t, Anthropic, url).Generate(context.Background(), req)
			check(t, resp, err, tc.want)
		})
	}
}

func TestOpenAI(t *testing.T) {
	limits := map[string]string{"x-ratelimit-remaining-requests": "59", "x-ratelimit-reset-requests": "1s"}
	cases := map[string]struct {
		reply canned
		want  outcome
	}{
		"success": {canned{200, limits, `{"id":"chatcmpl-1","object":"chat.completion","created":1764147600,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"neutral"},"finish_reason":"stop"}],"usage":{"prompt_tokens":18,"completion_tokens":1,"total_tokens":19}}`},
			outcome{text: "neutral", in: 18, out: 1, finish: "stop", remainin: 59}},
		"rate limited, date retry-after": {canned{429, map[string]string{"retry-after": now.Add(20 * time.Second).Format(http.TimeFormat)}, `{"error":{"message":"Rate limit reached for gpt-4o-mini","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
			outcome{class: ClassRateLimited, retryAt: 20 * time.Second}},
		"rate limited, reset header": {canned{429, map[string]string{"x-ratelimit-reset-requests": "6m0s"}, `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
			outcome{class: ClassRateLimited, retryAt: 6 * time.Minute}},
		"insufficient quota": {canned{429, nil, `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}`},
			outcome{class: ClassAuth}},
		"context too long": {canned{400, nil, `{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`},
			outcome{class: ClassContextTooLong}},
		"bad key": {canned{401, nil, `{"error":{"message":"Incorrect API key provided: sk-test-0123456789abcdef.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
			outcome{class: ClassAuth}},
		"server error": {canned{500, nil, `{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}`},
			outcome{class: ClassServerError}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			url := serve(t, tc.reply, func(r *http.Request) {
				if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer "+testKey {
					t.Errorf("request %s auth %q", r.URL.Path, r.Header.Get("Authorization"))
				}
			})
			resp, err := client(t, OpenAI, url+"/v1").Generate(context.Background(), req)
			check(t, resp, err, tc.want)
		})
	}
}

func TestOllama(t *testing.T) {
	cases := map[string]struct {
		reply canned
		want  outcome
	}{
		"success": {canned{200, nil, `{"model":"tiny","created_at":"2026-11-26T09:00:00Z","response":"ok","done":true,"done_reason":"stop","total_duration":1,"load_duration":1,"prompt_eval_count":7,"eval_count":4}`},
			outcome{text: "ok", in: 7, out: 4, finish: "stop"}},
		"model not found": {canned{404, nil, `{"error":"model 'mistral' not found"}`}, outcome{class: ClassBadRequest}},
		"server busy":     {canned{503, nil, `{"error":"server busy, please try again.  maximum pending requests exceeded"}`}, outcome{class: ClassServerError}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			url := serve(t, tc.reply, func(r *http.Request) {
				if r.URL.Path != "/api/generate" {
					t.Errorf("path %s", r.URL.Path)
				}
			})
			c, _ := New(Config{Type: Ollama, Endpoint: url, Now: func() time.Time { return now }})
			resp, err := c.Generate(context.Background(), req)
			check(t, resp, err, tc.want)
		})
	}
}

// TestOllamaContextLength: every call asks for the pool's context
// (num_ctx), the one the node agent warmed the model with, and none is
// sent when the pool sets none.
func TestOllamaContextLength(t *testing.T) {
	for _, numCtx := range []int32{0, 8192} {
		var got map[string]any
		url := serve(t, canned{200, nil, `{"response":"ok","done":true,"done_reason":"stop"}`}, func(r *http.Request) {
			var body struct {
				Options map[string]any `json:"options"`
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
				t.Error(err)
			}
			got = body.Options
		})
		c, _ := New(Config{Type: Ollama, Endpoint: url, ContextLength: numCtx, Now: func() time.Time { return now }})
		if _, err := c.Generate(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		v, sent := got["num_ctx"]
		if numCtx == 0 && sent || numCtx > 0 && v != float64(numCtx) {
			t.Errorf("ContextLength %d: options %v", numCtx, got)
		}
	}
}

func TestTransportFailures(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}))
		defer srv.Close()
		defer close(block)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := client(t, Gemini, srv.URL).Generate(ctx, req)
		check(t, nil, err, outcome{class: ClassTimeout})
	})
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := client(t, Anthropic, "http://127.0.0.1:1").Generate(ctx, req)
		check(t, nil, err, outcome{class: ClassCanceled})
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		_ = ln.Close()
		_, err := client(t, OpenAI, "http://"+addr+"/v1").Generate(context.Background(), req)
		check(t, nil, err, outcome{class: ClassConnection})
	})
	t.Run("connection reset", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			_ = conn.(*net.TCPConn).SetLinger(0)
			_ = conn.Close()
		}))
		defer srv.Close()
		_, err := client(t, Gemini, srv.URL).Generate(context.Background(), req)
		check(t, nil, err, outcome{class: ClassConnection})
	})
	t.Run("body over the cap", func(t *testing.T) {
		url := serve(t, canned{200, nil, `{"response":"` + strings.Repeat("x", 2000) + `"}`}, nil)
		c, _ := New(Config{Type: Ollama, Endpoint: url, MaxResponseBytes: 1000})
		_, err := c.Generate(context.Background(), req)
		check(t, nil, err, outcome{class: ClassServerError})
	})
}

// TestKeyNeverInErrors: a server that echoes the key, in the body and in
// the URL it redirects to, still yields errors without it.
func TestKeyNeverInErrors(t *testing.T) {
	for _, typ := range []Type{Gemini, Anthropic, OpenAI} {
		url := serve(t, canned{401, nil, `{"error":{"message":"bad key ` + testKey + `","type":"x","code":"invalid_api_key","status":"UNAUTHENTICATED"},"type":"error"}`}, nil)
		if typ == OpenAI {
			url += "/v1"
		}
		_, err := client(t, typ, url).Generate(context.Background(), req)
		if err == nil || strings.Contains(err.Error(), testKey) {
			t.Fatalf("%s: error %v leaks or is missing", typ, err)
		}
	}
}

func TestNewRefusesMissingKeyAndUnknownType(t *testing.T) {
	if _, err := New(Config{Type: Gemini}); err == nil {
		t.Fatal("a hosted client without a key was built")
	}
	if _, err := New(Config{Type: "Mistral", APIKey: "k"}); err == nil {
		t.Fatal("an unknown type was accepted")
	}
	if _, err := client(t, Gemini, "http://127.0.0.1:1").Generate(context.Background(), Request{Model: "m", Prompt: "p", Temperature: "hot"}); err == nil {
		t.Fatal("a non-numeric temperature was sent")
	}
}
