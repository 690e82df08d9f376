package gateway

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"

	"github.com/llmquota/llmquota/internal/provider"
)

// The Gemini dialect, at /gemini/v1beta/models/{model}:generateContent and
// :streamGenerateContent (and the same under /gemini/v1), so Google's Gen AI SDKs work with only a base-URL
// change (and the ServiceAccount token as their API key). The model in the
// path is "<provider>/<model>" or "<provider>", as in the other dialects;
// the SDKs put a model named "emu/gemini-2.5-flash" at models/emu/gemini-2.5-flash.

type geminiRequest struct {
	Contents          []geminiContent `json:"contents"`
	SystemInstruction *geminiContent  `json:"systemInstruction"`
	GenerationConfig  struct {
		MaxOutputTokens *int64       `json:"maxOutputTokens"`
		Temperature     *json.Number `json:"temperature"`
		CandidateCount  *int         `json:"candidateCount"`
		ThinkingConfig  *struct {
			ThinkingBudget  *int32          `json:"thinkingBudget"`
			IncludeThoughts json.RawMessage `json:"includeThoughts"`
			ThinkingLevel   json.RawMessage `json:"thinkingLevel"`
		} `json:"thinkingConfig"`

		// What the gateway cannot carry unless neutral (unsupported.go).
		StopSequences      json.RawMessage `json:"stopSequences"`
		TopP               json.RawMessage `json:"topP"`
		TopK               json.RawMessage `json:"topK"`
		PresencePenalty    json.RawMessage `json:"presencePenalty"`
		FrequencyPenalty   json.RawMessage `json:"frequencyPenalty"`
		ResponseMimeType   json.RawMessage `json:"responseMimeType"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
		ResponseModalities json.RawMessage `json:"responseModalities"`
		ResponseLogprobs   json.RawMessage `json:"responseLogprobs"`
		Logprobs           json.RawMessage `json:"logprobs"`
	} `json:"generationConfig"`
	Tools          json.RawMessage `json:"tools"`
	ToolConfig     json.RawMessage `json:"toolConfig"`
	SafetySettings json.RawMessage `json:"safetySettings"`
	CachedContent  json.RawMessage `json:"cachedContent"`
}

// unsupported refuses what the request asks that the gateway cannot carry.
func (b *geminiRequest) unsupported() *failure {
	gc := &b.GenerationConfig
	var includeThoughts, thinkingLevel json.RawMessage
	if tc := gc.ThinkingConfig; tc != nil {
		includeThoughts, thinkingLevel = tc.IncludeThoughts, tc.ThinkingLevel
	}
	return refuseUnsupported(field{"tools", b.Tools, emptyList}, field{"toolConfig", b.ToolConfig, nil},
		field{"safetySettings", b.SafetySettings, emptyList}, field{"cachedContent", b.CachedContent, nil},
		field{"generationConfig.stopSequences", gc.StopSequences, emptyList}, field{"generationConfig.topP", gc.TopP, nil},
		field{"generationConfig.topK", gc.TopK, nil}, field{"generationConfig.presencePenalty", gc.PresencePenalty, zero},
		field{"generationConfig.frequencyPenalty", gc.FrequencyPenalty, zero},
		field{"generationConfig.responseMimeType", gc.ResponseMimeType, plainText},
		field{"generationConfig.responseSchema", gc.ResponseSchema, nil},
		field{"generationConfig.responseJsonSchema", gc.ResponseJSONSchema, nil},
		field{"generationConfig.responseModalities", gc.ResponseModalities, textModality},
		field{"generationConfig.responseLogprobs", gc.ResponseLogprobs, falseValue},
		field{"generationConfig.logprobs", gc.Logprobs, zero},
		field{"generationConfig.thinkingConfig.includeThoughts", includeThoughts, falseValue},
		field{"generationConfig.thinkingConfig.thinkingLevel", thinkingLevel, nil})
}

type geminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []geminiPart `json:"parts"`
}

type geminiPart struct {
	Text *string `json:"text,omitempty"`
}

// geminiCall is a parsed Gemini call: its body and whether it streams.
type geminiCall struct {
	stream bool
}

// geminiParse reads the model and the method from the path, then the body.
func (g *Gateway) geminiParse(r *http.Request) (call, *geminiCall, *failure) {
	rest := r.PathValue("rest")
	colon := strings.LastIndexByte(rest, ':')
	model, method := rest, ""
	if colon >= 0 {
		model, method = rest[:colon], rest[colon+1:]
	}
	if method != "generateContent" && method != "streamGenerateContent" {
		return call{}, nil, fail(http.StatusNotFound, "not_found", "method %q is not served (generateContent, streamGenerateContent)", method)
	}
	var body geminiRequest
	c, f := g.begin(r, &body, func() string { return model })
	if f != nil {
		return c, nil, f
	}
	if n := body.GenerationConfig.CandidateCount; n != nil && *n != 1 {
		return c, nil, fail(http.StatusBadRequest, "invalid_request", "candidateCount=%d: the gateway makes one candidate per call", *n)
	}
	if f := body.unsupported(); f != nil {
		return c, nil, f
	}
	req := provider.Request{Model: c.req.Model}
	if tc := body.GenerationConfig.ThinkingConfig; tc != nil {
		req.ThinkingBudget = tc.ThinkingBudget // carried, as a batch's spec.thinkingBudget is
	}
	if si := body.SystemInstruction; si != nil {
		text, err := geminiText(si.Parts)
		if err != nil {
			return c, nil, fail(http.StatusBadRequest, "invalid_request", "systemInstruction: %v", err)
		}
		req.System = text
	}
	for i, content := range body.Contents {
		text, err := geminiText(content.Parts)
		if err != nil {
			return c, nil, fail(http.StatusBadRequest, "invalid_request", "contents[%d]: %v", i, err)
		}
		if content.Role != "" && content.Role != "user" && content.Role != "model" {
			return c, nil, fail(http.StatusBadRequest, "invalid_request", "contents[%d].role: %q is neither user nor model", i, content.Role)
		}
		req.History = append(req.History, provider.Turn{Assistant: content.Role == "model", Text: text})
	}
	if f := lastTurn(&req, req.History); f != nil {
		return c, nil, f
	}
	if t := body.GenerationConfig.Temperature; t != nil {
		req.Temperature = t.String()
	}
	c.req = req
	f = c.setOutputCap(body.GenerationConfig.MaxOutputTokens)
	return c, &geminiCall{stream: method == "streamGenerateContent"}, f
}

// geminiText joins text parts; other parts are refused.
func geminiText(parts []geminiPart) (string, error) {
	var b strings.Builder
	for i, p := range parts {
		if p.Text == nil {
			return "", fmt.Errorf("parts[%d] is not text (text only)", i)
		}
		b.WriteString(*p.Text)
	}
	return b.String(), nil
}

func (g *Gateway) geminiAnswer(w http.ResponseWriter, c call, _ *geminiCall, resp *provider.Response) {
	writeJSON(w, http.StatusOK, geminiResponse(c, resp.Text, resp))
}

// geminiResponse is a GenerateContentResponse of text; with resp, the
// finish and the usage too (the last of a stream).
func geminiResponse(c call, text string, resp *provider.Response) map[string]any {
	candidate := map[string]any{"index": 0, "content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": text}}}}
	v := map[string]any{"candidates": []any{candidate}, "modelVersion": c.provider + "/" + c.req.Model}
	if resp != nil {
		candidate["finishReason"] = finishWord(gemini, resp)
		v["usageMetadata"] = map[string]any{"promptTokenCount": resp.InputTokens, "candidatesTokenCount": resp.OutputTokens,
			"totalTokenCount": resp.InputTokens + resp.OutputTokens}
	}
	return v
}

func geminiStreams(gc *geminiCall) bool { return gc.stream }

// geminiStream is streamGenerateContent's answer: a response per piece,
// and a last one with the finish and the usage.
type geminiStream struct {
	w http.ResponseWriter
	c call
}

func (g *Gateway) geminiStream(w http.ResponseWriter, c call, _ *geminiCall) eventStream {
	startEvents(w)
	return geminiStream{w, c}
}

func (s geminiStream) text(p string) error {
	if p == "" {
		return nil
	}
	return writeEvent(s.w, "", geminiResponse(s.c, p, nil))
}

func (s geminiStream) end(resp *provider.Response) {
	_ = writeEvent(s.w, "", geminiResponse(s.c, "", resp))
}

// abort sends Google's error object as an event, which the Gen AI SDKs raise.
func (s geminiStream) abort(f *failure) {
	_ = writeEvent(s.w, "", map[string]any{"error": map[string]any{"code": f.status, "message": f.message, "status": geminiStatus(f.status)}})
}

// geminiStatus is Google's canonical status name for an HTTP status.
func geminiStatus(code int) string {
	switch code {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return "INVALID_ARGUMENT"
	case http.StatusUnauthorized:
		return "UNAUTHENTICATED"
	case http.StatusForbidden:
		return "PERMISSION_DENIED"
	case http.StatusNotFound:
		return "NOT_FOUND"
	case http.StatusTooManyRequests:
		return "RESOURCE_EXHAUSTED"
	case http.StatusNotImplemented:
		return "UNIMPLEMENTED"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE"
	case http.StatusGatewayTimeout:
		return "DEADLINE_EXCEEDED"
	}
	return "INTERNAL"
}

// geminiError writes a failure in Google's error shape; a 429 carries its
// wait as a RetryInfo detail too, where Gemini clients look for it.
func (g *Gateway) geminiError(w http.ResponseWriter, f *failure) {
	if f.status == 499 {
		return // the caller left: nobody reads the answer
	}
	e := map[string]any{"code": f.status, "message": f.message, "status": geminiStatus(f.status)}
	waitHeaders(w, f, g.now())
	if f.status == http.StatusTooManyRequests {
		if !f.retryAt.IsZero() {
			secs := math.Ceil(max(0, f.retryAt.Sub(g.now()).Seconds()))
			e["details"] = []any{map[string]any{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": fmt.Sprintf("%.0fs", secs)}}
		}
	}
	writeJSON(w, f.status, map[string]any{"error": e})
}
