// Command gatewayclient is the real-cluster suite's app: from a Pod, it
// calls the llmquota gateway with the official Anthropic Go SDK, its
// ServiceAccount's projected token as the API key, and prints one JSON line
// per call (and a summary line last) for the suite to read from the Pod's
// log. A test-only image carries it (make cluster-images).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
)

// Call is one call's outcome, as the suite reads it.
type Call struct {
	N        int    `json:"n"`
	Time     string `json:"time"`
	Millis   int64  `json:"millis"` // how long it took, to its answer or its failure
	Status   int    `json:"status"`
	Provider string `json:"provider,omitempty"` // the X-Llmquota-Provider that served it
	Text     string `json:"text,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Summary is the last line.
type Summary struct {
	Calls    int         `json:"calls"`
	ByStatus map[int]int `json:"byStatus"`
}

func main() {
	base := flag.String("base-url", "http://llmquota-gateway.llmquota-system.svc/anthropic/", "The gateway's Anthropic base URL.")
	tokenFile := flag.String("token-file", "/var/run/secrets/llmquota/token", "The projected ServiceAccount token (audience llmquota.dev).")
	model := flag.String("model", "", "The LLMProvider to call, as <provider> or <provider>/<model>.")
	calls := flag.Int("calls", 1, "How many calls to make, one after another.")
	every := flag.Duration("every", time.Second, "Time between the starts of two calls.")
	maxWait := flag.String("max-wait", "", "How long each call may wait for quota (the gateway's X-Llmquota-Max-Wait header); empty: the gateway's default.")
	flag.Parse()

	sum := Summary{ByStatus: map[int]int{}}
	out := json.NewEncoder(os.Stdout)
	for n := range *calls {
		started := time.Now()
		c := call(*base, *tokenFile, *model, *maxWait, n)
		sum.Calls++
		sum.ByStatus[c.Status]++
		_ = out.Encode(c)
		time.Sleep(time.Until(started.Add(*every)))
	}
	_ = out.Encode(sum)
}

// call makes one call; a failure to reach the gateway is status 0.
func call(base, tokenFile, model, maxWait string, n int) (c Call) {
	began := time.Now()
	c = Call{N: n, Time: began.UTC().Format(time.RFC3339Nano)}
	defer func() { c.Millis = time.Since(began).Milliseconds() }()
	token, err := os.ReadFile(tokenFile) // read each time: the kubelet rotates it
	if err != nil {
		c.Error = err.Error()
		return c
	}
	var raw *http.Response
	opts := []option.RequestOption{option.WithBaseURL(base), option.WithAPIKey(strings.TrimSpace(string(token))), option.WithMaxRetries(0),
		option.WithRequestTimeout(30 * time.Second)}
	if maxWait != "" {
		opts = append(opts, option.WithHeader("X-Llmquota-Max-Wait", maxWait))
	}
	client := anthropic.NewClient(opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	msg, err := client.Messages.New(ctx, anthropic.MessageNewParams{Model: model, MaxTokens: 64,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(fmt.Sprintf("Classify headline %d", n)))}},
		option.WithResponseInto(&raw))
	var apiErr *anthropic.Error
	switch {
	case errors.As(err, &apiErr):
		c.Status, c.Error = apiErr.StatusCode, apiErr.Error()
	case err != nil:
		c.Error = err.Error()
	default:
		c.Status = http.StatusOK
		c.Provider = raw.Header.Get("X-Llmquota-Provider")
		for _, b := range msg.Content {
			c.Text += b.Text
		}
	}
	return c
}
