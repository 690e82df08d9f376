package emulator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// events writes one answer as server-sent events (Ollama's as JSON
// lines), each flushed at once.
type events struct {
	w     http.ResponseWriter
	lines bool
}

func (e events) send(name string, v any) {
	data, _ := json.Marshal(v)
	switch {
	case e.lines:
		_, _ = e.w.Write(append(data, '\n'))
	case name != "":
		_, _ = e.w.Write([]byte("event: " + name + "\n"))
		fallthrough
	default:
		_, _ = e.w.Write(append(append([]byte("data: "), data...), "\n\n"...))
	}
	if f, ok := e.w.(http.Flusher); ok {
		f.Flush()
	}
}

// pieces splits an answer as a model streams it: word by word, each
// word with the space after it.
func pieces(text string) []string {
	var out []string
	for text != "" {
		i := strings.IndexByte(text, ' ')
		if i < 0 {
			return append(out, text)
		}
		out, text = append(out, text[:i+1]), text[i+1:]
	}
	return out
}

// writeStream answers as the API's event stream: an opening, the text in
// pieces, and a close with the finish and (unless NoStreamUsage) the usage
// in the API's own fields. It stops when the caller leaves.
func (s *Server) writeStream(ctx context.Context, w http.ResponseWriter, c call, text string, in int, a answer) {
	if a.out == 0 {
		text = ""
	}
	ev := c.api.startStream(w)
	usage := c.streamUsage && !s.cfg.NoStreamUsage
	c.api.openStream(ev, c, in, usage)
	parts := pieces(text)
	for i, p := range parts {
		if i > 0 && !s.beforeChunk(ctx, i) {
			return
		}
		c.api.streamPiece(ev, c, p)
	}
	if !s.beforeChunk(ctx, len(parts)) {
		return
	}
	c.api.closeStream(ev, c, in, a, usage)
}

// beforeChunk waits ChunkDelay and calls BeforeChunk; false when the
// caller left.
func (s *Server) beforeChunk(ctx context.Context, i int) bool {
	if s.cfg.ChunkDelay > 0 && !sleep(ctx, s.cfg.ChunkDelay) {
		return false
	}
	if s.cfg.BeforeChunk != nil {
		s.cfg.BeforeChunk(ctx, i)
	}
	return ctx.Err() == nil
}

// cut starts an answer and drops the connection in its middle.
func (s *Server) cut(w http.ResponseWriter, c call) {
	if c.stream {
		ev := c.api.startStream(w)
		c.api.openStream(ev, c, promptTokens(c.prompt), true)
		c.api.streamPiece(ev, c, pieces(answerText(c))[0])
	} else {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"id": "cut`))
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	reset(w)
}

// startStream answers 200 as a stream: server-sent events, or Ollama's
// JSON lines.
func (d dialect) startStream(w http.ResponseWriter) events {
	ev := events{w: w, lines: d == ollama}
	w.Header().Set("Content-Type", "text/event-stream")
	if ev.lines {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.WriteHeader(http.StatusOK)
	return ev
}

// openStream writes what a stream opens with (OpenAI's role chunk,
// Anthropic's message_start with the input usage; Gemini has none).
func (d dialect) openStream(ev events, c call, in int, usage bool) {
	switch d {
	case openai:
		ev.send("", openAIChunk(c, map[string]any{"role": "assistant", "content": ""}, nil))
	case anthropic:
		msg := map[string]any{"id": "msg_emulated", "type": "message", "role": "assistant", "model": c.model, "content": []any{},
			"stop_reason": nil, "stop_sequence": nil}
		if usage {
			msg["usage"] = map[string]any{"input_tokens": in, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
		}
		ev.send("message_start", map[string]any{"type": "message_start", "message": msg})
		ev.send("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": map[string]any{"type": "text", "text": ""}})
		ev.send("ping", map[string]any{"type": "ping"})
	}
}

// streamPiece writes one piece of the answer's text.
func (d dialect) streamPiece(ev events, c call, p string) {
	switch d {
	case openai:
		ev.send("", openAIChunk(c, map[string]any{"content": p}, nil))
	case anthropic:
		ev.send("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0, "delta": map[string]any{"type": "text_delta", "text": p}})
	case gemini:
		ev.send("", map[string]any{"candidates": []any{map[string]any{"index": 0,
			"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": p}}}}}, "modelVersion": c.model})
	case ollama:
		ev.send("", map[string]any{"model": c.model, "created_at": time.Now().UTC().Format(time.RFC3339Nano), "response": p, "done": false})
	}
}

// closeStream writes the finish and, with usage, the answer's usage.
func (d dialect) closeStream(ev events, c call, in int, a answer, usage bool) {
	finish := finishWords[d][0]
	if a.cut {
		finish = finishWords[d][1]
	}
	switch d {
	case openai:
		ev.send("", openAIChunk(c, map[string]any{}, finish))
		if usage {
			v := openAIChunk(c, nil, nil)
			v["choices"] = []any{}
			v["usage"] = map[string]any{"prompt_tokens": in, "completion_tokens": a.out + a.thoughts, "total_tokens": in + a.out + a.thoughts,
				"completion_tokens_details": map[string]any{"reasoning_tokens": a.thoughts}}
			ev.send("", v)
		}
		_, _ = ev.w.Write([]byte("data: [DONE]\n\n"))
	case anthropic:
		ev.send("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
		delta := map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": finish, "stop_sequence": nil}}
		if usage {
			delta["usage"] = map[string]any{"output_tokens": a.out}
		}
		ev.send("message_delta", delta)
		ev.send("message_stop", map[string]any{"type": "message_stop"})
	case gemini:
		v := map[string]any{"candidates": []any{map[string]any{"index": 0, "finishReason": finish,
			"content": map[string]any{"role": "model", "parts": []any{map[string]any{"text": ""}}}}}, "modelVersion": c.model}
		if usage {
			u := map[string]any{"promptTokenCount": in, "candidatesTokenCount": a.out, "totalTokenCount": in + a.out + a.thoughts}
			if a.thoughts > 0 {
				u["thoughtsTokenCount"] = a.thoughts
			}
			v["usageMetadata"] = u
		}
		ev.send("", v)
	case ollama:
		v := map[string]any{"model": c.model, "created_at": time.Now().UTC().Format(time.RFC3339Nano), "response": "", "done": true, "done_reason": finish}
		if usage {
			v["prompt_eval_count"], v["eval_count"] = in, a.out
		}
		ev.send("", v)
	}
}

// openAIChunk is a chat.completion.chunk with one choice's delta (none
// when delta is nil) and its finish_reason (null when nil).
func openAIChunk(c call, delta map[string]any, finish any) map[string]any {
	v := map[string]any{"id": "chatcmpl-emulated", "object": "chat.completion.chunk", "created": time.Now().Unix(), "model": c.model, "usage": nil}
	if delta != nil {
		v["choices"] = []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}}
	}
	return v
}
