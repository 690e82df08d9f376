package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	anthropicoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/genai"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	llmv1 "github.com/llmquota/llmquota/api/v1alpha1"
	"github.com/llmquota/llmquota/internal/authority"
	"github.com/llmquota/llmquota/internal/dispatch"
	"github.com/llmquota/llmquota/internal/emulator"
	"github.com/llmquota/llmquota/internal/gateway"
)

// sdk is the official OpenAI Go SDK pointed at the gateway, with a
// ServiceAccount token as its API key; it does not retry, so every answer
// is the gateway's own.
func sdk(b *bed, token string) *openai.Client {
	c := openai.NewClient(option.WithBaseURL(b.gateway+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	return &c
}

// TestGateway runs the OpenAI dialect against one bed: a real API server,
// the emulator, the authority and the gateway over HTTP.
func TestGateway(t *testing.T) {
	b := newBed(t, 600, time.Minute)
	ctx := context.Background()

	t.Run("the official SDK gets an answer, and usage", func(t *testing.T) {
		resp, err := sdk(b, b.app).Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "emu/gpt-test",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hello"),
				openai.AssistantMessage("hi"), openai.UserMessage("what is a quota?")},
			MaxCompletionTokens: openai.Int(64),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || !strings.HasPrefix(resp.Choices[0].Message.Content, "emulated answer") || resp.Model != "emu/gpt-test" {
			t.Fatalf("answer %+v", resp)
		}
		if resp.Usage.PromptTokens == 0 || resp.Usage.CompletionTokens == 0 || resp.Choices[0].FinishReason != "stop" {
			t.Fatalf("usage %+v, finish %q", resp.Usage, resp.Choices[0].FinishReason)
		}
		last := b.emu.Log()[len(b.emu.Log())-1]
		if last.Model != "gpt-test" || last.Status != http.StatusOK {
			t.Fatalf("the emulator saw %+v", last)
		}
	})

	t.Run("the provider's default model, streamed with usage", func(t *testing.T) {
		stream := sdk(b, b.app).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "emu", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream me")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 || !strings.HasPrefix(acc.Choices[0].Message.Content, "emulated answer") || acc.Usage.TotalTokens == 0 {
			t.Fatalf("accumulated %+v", acc.ChatCompletion)
		}
	})

	t.Run("the official Anthropic SDK, plain and streamed", func(t *testing.T) {
		claude := anthropic.NewClient(anthropicoption.WithBaseURL(b.gateway+"/anthropic/"), anthropicoption.WithAPIKey(b.app), anthropicoption.WithMaxRetries(0))
		params := anthropic.MessageNewParams{Model: "emu/gpt-test", MaxTokens: 64,
			System:   []anthropic.TextBlockParam{{Text: "be brief"}},
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("what is a quota?"))}}
		msg, err := claude.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) != 1 || !strings.HasPrefix(msg.Content[0].Text, "emulated answer") || msg.StopReason != "end_turn" || msg.Usage.OutputTokens == 0 {
			t.Fatalf("message %+v", msg)
		}
		stream := claude.Messages.NewStreaming(ctx, params)
		acc := anthropic.Message{}
		for stream.Next() {
			if err := acc.Accumulate(stream.Current()); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Content) != 1 || acc.Content[0].Text != msg.Content[0].Text || acc.Usage.OutputTokens == 0 {
			t.Fatalf("accumulated %+v", acc)
		}
		denied := anthropic.NewClient(anthropicoption.WithBaseURL(b.gateway+"/anthropic/"), anthropicoption.WithAPIKey(b.other), anthropicoption.WithMaxRetries(0))
		_, err = denied.Messages.New(ctx, params)
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden || !strings.Contains(apiErr.RawJSON(), `"permission_error"`) {
			t.Fatalf("a caller without use: %v", err)
		}
	})

	t.Run("Google's Gen AI SDK, plain and streamed", func(t *testing.T) {
		gemini := func(token string) *genai.Client {
			c, err := genai.NewClient(ctx, &genai.ClientConfig{APIKey: token, Backend: genai.BackendGeminiAPI,
				HTTPOptions: genai.HTTPOptions{BaseURL: b.gateway + "/gemini/"}})
			must(t, err)
			return c
		}
		config := &genai.GenerateContentConfig{MaxOutputTokens: 64, SystemInstruction: genai.NewContentFromText("be brief", genai.RoleUser)}
		resp, err := gemini(b.app).Models.GenerateContent(ctx, "emu/gpt-test", genai.Text("what is a quota?"), config)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(resp.Text(), "emulated answer") || resp.UsageMetadata == nil || resp.UsageMetadata.CandidatesTokenCount == 0 {
			t.Fatalf("response %+v", resp)
		}
		var streamed strings.Builder
		for chunk, err := range gemini(b.app).Models.GenerateContentStream(ctx, "emu", genai.Text("what is a quota?"), config) {
			if err != nil {
				t.Fatal(err)
			}
			streamed.WriteString(chunk.Text())
		}
		if streamed.String() != resp.Text() {
			t.Fatalf("streamed %q, want %q", streamed.String(), resp.Text())
		}
		_, err = gemini(b.other).Models.GenerateContent(ctx, "emu", genai.Text("x"), nil)
		var apiErr genai.APIError
		if !errors.As(err, &apiErr) || apiErr.Code != http.StatusForbidden || apiErr.Status != "PERMISSION_DENIED" {
			t.Fatalf("a caller without use: %v", err)
		}
	})

	t.Run("models lists what the caller may use", func(t *testing.T) {
		ids := func(token string) []string {
			page, err := sdk(b, token).Models.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, m := range page.Data {
				out = append(out, m.ID)
			}
			return out
		}
		if got := ids(b.app); !slices.Equal(got, []string{"emu", "emu/gpt-test"}) {
			t.Fatalf("team-a/app sees %v", got)
		}
		if got := ids(b.other); len(got) != 0 {
			t.Fatalf("team-a/other, with no grant, sees %v", got)
		}
		if got := ids(b.unselected); len(got) != 0 {
			t.Fatalf("team-c/ops, in a namespace emu does not select, sees %v", got)
		}
	})

	t.Run("refusals in OpenAI's error shape", func(t *testing.T) {
		// The spares of the calls above go back once past their use: only
		// then does a grant held below tell of a refused call.
		waitReleased(t, b)
		before := len(b.emu.Log())
		wrongAudience := token(t, b.c, "team-a", "app") // the API server's own audience
		cases := []struct {
			name, token, model string
			n                  int64
			status             int
			code               string
		}{
			{"no token", "", "emu", 0, http.StatusUnauthorized, "invalid_api_key"},
			{"a token for another audience", wrongAudience, "emu", 0, http.StatusUnauthorized, "invalid_api_key"},
			{"a caller without use on the provider", b.other, "emu", 0, http.StatusForbidden, "permission_denied"},
			{"a provider the caller may not use", b.app, "gemini/flash", 0, http.StatusForbidden, "permission_denied"},
			{"RBAC allows, the namespaceSelector does not", b.unselected, "emu", 0, http.StatusForbidden, "permission_denied"},
			{"an unknown provider", b.ops, "nope/model", 0, http.StatusNotFound, "model_not_found"},
			{"n > 1", b.app, "emu", 2, http.StatusBadRequest, "invalid_request"},
		}
		for _, c := range cases {
			params := openai.ChatCompletionNewParams{Model: c.model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}}
			if c.n > 0 {
				params.N = openai.Int(c.n)
			}
			_, err := sdk(b, c.token).Chat.Completions.New(ctx, params)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != c.status || apiErr.Code != c.code || apiErr.Message == "" {
				t.Errorf("%s: %v (%+v), want %d %s", c.name, err, apiErr, c.status, c.code)
			}
		}
		for name, body := range map[string]string{"malformed JSON": `{"model": "emu", "messages": [`, "no messages": `{"model":"emu"}`,
			"the assistant last": `{"model":"emu","messages":[{"role":"assistant","content":"x"}]}`,
			"an image part":      `{"model":"emu","messages":[{"role":"user","content":[{"type":"image_url"}]}]}`} {
			if status, _ := post(t, b, b.app, body, nil); status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, status)
			}
		}
		huge := `{"model":"emu","messages":[{"role":"user","content":"` + strings.Repeat("x", gateway.MaxBodyBytes) + `"}]}`
		if status, _ := post(t, b, b.app, huge, nil); status != http.StatusRequestEntityTooLarge {
			t.Errorf("a body over the bound: status %d, want 413", status)
		}
		if n := len(b.emu.Log()) - before; n != 0 {
			t.Fatalf("%d refused calls reached the provider", n)
		}
		if s := b.d.Interactive(); s.Waiting != 0 || b.authority().Held() != 0 {
			t.Fatalf("refused calls left quota held: lane %+v, %d grants", s, b.authority().Held())
		}
	})

	t.Run("a refused caller's team gets an Event on its ServiceAccount", func(t *testing.T) {
		// The refusals above include team-c/ops, which RBAC lets use emu and
		// emu's namespaceSelector does not select.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var list eventsv1.EventList
			if err := b.c.List(ctx, &list, client.InNamespace("team-c")); err != nil {
				t.Fatal(err)
			}
			for _, e := range list.Items {
				if e.Reason == gateway.ReasonProviderAccessDenied && e.Regarding.Kind == "ServiceAccount" && e.Regarding.Name == "ops" &&
					e.Type == "Warning" && strings.Contains(e.Note, "provider emu") && strings.Contains(e.Note, "namespaceSelector") {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s Event on team-c/ops after its refusal; team-c's Events: %+v", gateway.ReasonProviderAccessDenied, list.Items)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("the provider key never reaches the caller", func(t *testing.T) {
		_, body := post(t, b, b.app, `{"model":"emu","messages":[{"role":"user","content":"x"}]}`, nil)
		if strings.Contains(body, apiKey) {
			t.Fatalf("the answer holds the provider's key: %s", body)
		}
	})

	t.Run("only a gateway's ServiceAccount draws quota", func(t *testing.T) {
		for _, tok := range []string{"", b.app} {
			if ok := b.authority().Authorize(ctx, tok) == nil; ok {
				t.Errorf("the authority accepts a token that is not a gateway's (%q...)", tok[:min(len(tok), 8)])
			}
		}
	})
}

// post sends a raw Chat Completions body to the first gateway replica and
// returns the status and body.
func post(t *testing.T, b *bed, token, body string, header http.Header) (int, string) {
	t.Helper()
	return postTo(t, b.gateway, token, body, header)
}

// postTo sends a raw Chat Completions body to the gateway at base.
func postTo(t *testing.T, base, token, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", bytes.NewReader([]byte(body)))
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// TestGatewayAdmitsExactlyTheWindow: 2,000 concurrent calls against 100 a
// minute, spread over three gateway replicas, none willing to wait: exactly
// 100 reach the provider (one call per replica before the burst, so each
// knows the provider gives spare grants, and the burst's calls are served
// from spares as well as from their own grants), the other 1,900 are
// answered 429, and the provider's log, counted by arrival, shows no window
// exceeded and no quota refusal. A refusal by the window names
// when it actually frees: one instant for all, a minute (and the guard)
// after its first call. Once the provider's answers say its requests are
// spent ("0 remaining until T"), later refusals name that hold instead,
// never an earlier time.
func TestGatewayAdmitsExactlyTheWindow(t *testing.T) {
	b := newBed(t, 100, time.Minute)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses, retryAt := map[int]int{}, map[string]map[string]int{} // by limited-by, then retry-at
	var maxRetryAfter int
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 256, MaxIdleConnsPerHost: 256}}
	body := []byte(`{"model":"emu","max_tokens":16,"messages":[{"role":"user","content":"burst"}]}`)
	for _, gw := range b.gateways {
		if status, out := postTo(t, gw, b.app, string(body), nil); status != http.StatusOK {
			t.Fatalf("the call before the burst: %d %s", status, out)
		}
	}
	statuses[http.StatusOK] = len(b.gateways)
	for i := range 2000 - len(b.gateways) {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPost, b.gateways[i%3]+"/v1/chat/completions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+b.app)
			req.Header.Set(gateway.MaxWaitHeader, "0")
			resp, err := client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			statuses[resp.StatusCode]++
			if resp.StatusCode == http.StatusTooManyRequests {
				by := resp.Header.Get(gateway.LimitedByHeader)
				if retryAt[by] == nil {
					retryAt[by] = map[string]int{}
				}
				retryAt[by][resp.Header.Get(gateway.RetryAtHeader)]++
				secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
				maxRetryAfter = max(maxRetryAfter, secs)
			}
		})
	}
	wg.Wait()
	end := time.Now()
	if statuses[http.StatusOK] != 100 || statuses[http.StatusTooManyRequests] != 1900 {
		t.Fatalf("statuses %v, want 100 answered and 1,900 refused", statuses)
	}
	byWindow := retryAt["Window/window"]
	if len(byWindow) != 1 || len(retryAt) > 2 || (len(retryAt) == 2 && retryAt["RetryAfter"] == nil) {
		t.Fatalf("refusals by what refused them and when it frees: %v; want the window's, naming one instant, and perhaps the provider's own hold", retryAt)
	}
	var frees time.Time
	for at := range byWindow {
		var err error
		frees, err = time.Parse(time.RFC3339Nano, at)
		must(t, err)
	}
	// The window frees when its first call leaves it: a minute (and the
	// guard) after a call admitted between start and end.
	if frees.Before(start.Add(time.Minute)) || frees.After(end.Add(time.Minute+time.Second)) {
		t.Fatalf("the window frees at %v, not a minute after the burst (%v to %v)", frees, start, end)
	}
	for at := range retryAt["RetryAfter"] {
		held, err := time.Parse(time.RFC3339Nano, at)
		must(t, err)
		if held.Before(frees) {
			t.Fatalf("a refusal named %v, before the window frees at %v", held, frees)
		}
	}
	// Each Retry-After is the whole seconds from its refusal to the
	// window's freeing, rounded up: refusals came between start and end.
	if hi, lo := int(math.Ceil(frees.Sub(start).Seconds()))+1, int(frees.Sub(end).Seconds()); maxRetryAfter > hi || maxRetryAfter < lo {
		t.Fatalf("Retry-After up to %d s, want between %d and %d s", maxRetryAfter, lo, hi)
	}
	log := b.emu.Log()
	tally := emulator.Count(log)
	if tally.Arrivals != 100 || tally.QuotaRefusals != 0 {
		t.Fatalf("the provider saw %+v, want 100 arrivals and no quota refusal", tally)
	}
	must(t, emulator.CheckWindows(log, []emulator.Limit{{Requests: 100, Period: time.Minute}}))
	waitReleased(t, b)
	var spares authority.SpareStats
	for _, s := range b.spares {
		spares.Used += s.Stats().Used
		spares.Returned += s.Stats().Returned
	}
	if spares.Used == 0 {
		t.Fatal("no call was served from a spare grant: the burst did not exercise them")
	}
	t.Logf("spare grants: %+v", spares)
}

// TestGatewayAndBatchShareTheWindow: gateway calls through three replicas
// and a batch on one provider at once (40 calls in any 13 s): together they
// never pass the window at the provider, and the interactive calls go
// first. The batch alone fills two windows (26 s); a call waits at most
// 20 s, so had the batch kept the slots that free at 13 s, the calls would
// be refused. The window is 13 s, not shorter, for its guard: a window's
// guard is a fiftieth of it up to 250 ms (reached from 12.5 s, and by every
// minute window), and it must cover the gateway's hop between the leader's
// grant and the provider. A 3 s window's 60 ms guard did not, with -race on
// two loaded cores (provider 429s in 2 of 5 full runs).
func TestGatewayAndBatchShareTheWindow(t *testing.T) {
	const limit, period, batchItems = 40, 13 * time.Second, 80
	b := newBed(t, limit, period)
	if status, _ := post(t, b, b.app, `{"model":"emu","max_tokens":16,"messages":[{"role":"user","content":"warm up"}]}`, nil); status != http.StatusOK {
		t.Fatalf("first call: status %d", status)
	}
	results := make(chan dispatch.Result, batchItems)
	items := make([]dispatch.Item, batchItems)
	for i := range items {
		items[i] = dispatch.Item{ID: strconv.Itoa(i), Prompt: "batch item " + strconv.Itoa(i)}
	}
	b.d.Submit(dispatch.Batch{Key: "team-a/batch", Namespace: "team-a", Size: len(items), Items: items, OnResult: func(r dispatch.Result) { results <- r }})
	statuses := postAcross(t, b, 30, `{"model":"emu","max_tokens":16,"messages":[{"role":"user","content":"interactive"}]}`, "20s")
	if statuses[http.StatusOK] != 30 {
		t.Fatalf("interactive calls answered by status %v, want 30 answered: the batch took their quota", statuses)
	}
	for range items {
		select {
		case r := <-results:
			if !r.Succeeded {
				t.Fatalf("batch item %s: %s %s", r.ID, r.ErrorClass, r.ErrorMessage)
			}
		case <-time.After(time.Minute):
			t.Fatal("the batch did not finish")
		}
	}
	log := b.emu.Log()
	if tally := emulator.Count(log); tally.QuotaRefusals != 0 || tally.Arrivals != 1+30+batchItems {
		t.Fatalf("the provider saw %+v, want %d arrivals and no quota refusal", tally, 1+30+batchItems)
	}
	must(t, emulator.CheckWindows(log, []emulator.Limit{{Requests: limit, Period: period}}))
}

// waitReleased waits until every grant was released by the gateways'
// background releases.
func waitReleased(t *testing.T, b *bed) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for b.authority().Held() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d grants still held", b.authority().Held())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProviderSetsTheDefaultWait: spec.interactive.maxWaitMilliseconds is
// the wait of calls that do not say theirs. With one call in any 2 s, a
// second call at once is refused when the provider allows no wait, and
// waits for the window and is answered when it allows 30 s; a caller's
// header still says otherwise.
func TestProviderSetsTheDefaultWait(t *testing.T) {
	b := newBed(t, 1, 2*time.Second)
	ctx := context.Background()
	setWait := func(ms int32) {
		t.Helper()
		var p llmv1.LLMProvider
		must(t, b.c.Get(ctx, types.NamespacedName{Name: "emu"}, &p))
		p.Spec.Interactive = &llmv1.InteractivePolicy{MaxWaitMilliseconds: ptr.To(ms)}
		must(t, b.c.Update(ctx, &p))
	}
	call := func(header http.Header) int {
		status, _ := post(t, b, b.app, `{"model":"emu","max_tokens":16,"messages":[{"role":"user","content":"x"}]}`, header)
		return status
	}
	setWait(0)
	if s := call(nil); s != http.StatusOK {
		t.Fatalf("first call: %d", s)
	}
	if s := call(nil); s != http.StatusTooManyRequests {
		t.Fatalf("a second call with the provider's wait of 0: %d, want 429", s)
	}
	setWait(30_000)
	if s := call(nil); s != http.StatusOK {
		t.Fatalf("a call with the provider's wait of 30 s: %d, want it answered once the window frees", s)
	}
	if s := call(http.Header{gateway.MaxWaitHeader: {"0"}}); s != http.StatusTooManyRequests {
		t.Fatalf("a call saying it waits 0 s: %d, want 429", s)
	}
}

// TestGatewayIntervalHoldsAtTheServer: calls through three gateways to a
// provider with a 50 ms minimum interval, each gateway slow by up to 60 ms
// between its grant and its write (as a loaded replica is): the provider
// sees no two calls closer than 50 ms, since each grant waits for the word
// that the call before it was written. Counted from the grants, as before
// the write was reported, this fails: grants 70 ms apart (the interval and
// its guard) arrived 38 ms apart.
func TestGatewayIntervalHoldsAtTheServer(t *testing.T) {
	b := newBed(t, 1000, time.Minute)
	emu, _ := b.addProviderWith(t, "paced", 1000, time.Minute, providerOptions{
		spec:     func(s *llmv1.LLMProviderSpec) { s.Limits.MinIntervalMilliseconds = ptr.To[int32](50) },
		dispatch: func(c *dispatch.Config) { c.Limits.MinInterval = 50 * time.Millisecond },
	})
	grant(t, b.c, "use-paced", []string{"paced"}, "team-a", "app")
	b.slowWrites.Store(int64(60 * time.Millisecond))
	statuses := postAcross(t, b, 24, `{"model":"paced","max_tokens":16,"messages":[{"role":"user","content":"paced"}]}`, "30s")
	if statuses[http.StatusOK] != 24 {
		t.Fatalf("answered by status %v, want 24 answered", statuses)
	}
	log := emu.Log()
	if len(log) != 24 {
		t.Fatalf("the provider saw %d calls, want 24", len(log))
	}
	must(t, emulator.CheckInterval(log, 50*time.Millisecond))
}

// postAcross posts body n times at once as team-a/app, spread over the
// bed's three gateways, each waiting up to wait for quota, and counts the
// answers by status.
func postAcross(t *testing.T, b *bed, n int, body, wait string) map[int]int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := range n {
		wg.Go(func() {
			status, answer := postTo(t, b.gateways[i%3], b.app, body, http.Header{gateway.MaxWaitHeader: {wait}})
			mu.Lock()
			defer mu.Unlock()
			statuses[status]++
			if status != http.StatusOK {
				t.Logf("refused: %s", answer)
			}
		})
	}
	wg.Wait()
	return statuses
}

// TestGatewayWaitsForALeader: while no quota authority answers (the leader
// crashed and the managers elect another), a call that may not wait is
// answered 503 at once with a Retry-After; a call that may wait asks again
// until an authority answers and serves its provider (a new leader answers
// before its provider's dispatcher started), then is served under its
// quota, and the provider saw that call alone. So is a call to a provider
// with a fallback, which asks its primary without waiting for quota: the
// fallback's quota would come from the same absent leader.
func TestGatewayWaitsForALeader(t *testing.T) {
	b := newBed(t, 100, time.Minute)
	b.addProvider(t, "backup", 10, time.Minute, nil)
	primaryEmu, primary := b.addProvider(t, "primary", 10, time.Minute, func(spec *llmv1.LLMProviderSpec) {
		spec.Fallback = &llmv1.ProviderReference{Name: "backup"}
		spec.Interactive = &llmv1.InteractivePolicy{Fallback: llmv1.InteractiveFallbackWhenLimited}
	})
	b.authDown.Store(true)

	req, err := http.NewRequest(http.MethodPost, b.gateway+"/v1/chat/completions",
		strings.NewReader(`{"model":"emu","messages":[{"role":"user","content":"no wait"}]}`))
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+b.app)
	req.Header.Set(gateway.MaxWaitHeader, "0")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(out), "quota_unavailable") || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("a call that may not wait, with no authority: %d %s (Retry-After %q)", resp.StatusCode, out, resp.Header.Get("Retry-After"))
	}

	for _, c := range []struct {
		provider, token string
		emu             *emulator.Server
		d               *dispatch.Dispatcher
	}{{"emu", b.app, b.emu, b.d}, {"primary", b.ops, primaryEmu, primary}} {
		b.waitForALeader(t, c.provider, c.token, c.d)
		if n := len(c.emu.Log()); n != 1 {
			t.Fatalf("%s saw %d calls, want the waiting one", c.provider, n)
		}
	}
	waitReleased(t, b)
}

// waitForALeader sends a call to provider that may wait 60 s while no
// authority answers, then while the authority answers without serving the
// provider (its dispatcher d not started yet), and checks that it is
// answered 200 only once the authority serves the provider again.
func (b *bed) waitForALeader(t *testing.T, provider, token string, d *dispatch.Dispatcher) {
	t.Helper()
	b.authDown.Store(true)
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	dropped := b.authDropped.Load()
	go func() {
		code, out := post(t, b, token, `{"model":"`+provider+`","messages":[{"role":"user","content":"during an election"}]}`,
			http.Header{gateway.MaxWaitHeader: {"60s"}})
		done <- answer{code, out}
	}()
	notYet := func(while string) {
		t.Helper()
		select {
		case a := <-done:
			t.Fatalf("%s: answered %d %s", while, a.code, a.body)
		default:
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	until := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	until("the waiting call asked, and asked again twice", func() bool { return b.authDropped.Load() >= dropped+3 })
	notYet("while no authority answers")
	b.serve(provider, nil) // the new leader has not started the provider's dispatcher yet
	notServed := b.notServed.Load()
	b.authDown.Store(false)
	until("the new leader told the call it does not serve the provider, and was asked again", func() bool { return b.notServed.Load() >= notServed+2 })
	notYet("before the new leader served the provider")
	b.serve(provider, d)
	if a := <-done; a.code != http.StatusOK {
		t.Fatalf("once the authority serves %s, the waiting call got %d: %s", provider, a.code, a.body)
	}
}
