// Package emulator serves the Gemini, Anthropic, OpenAI and Ollama APIs on
// one HTTP port, behaving like the real services where it matters to a
// client under quota: per-key request windows enforced exactly (429 with
// Retry-After and the API's own error body), latency, deterministic
// responses with token counts, and injected faults (429 storms, 500, 503,
// 529, hangs past the client's timeout, connection resets, malformed JSON).
// It records every request so tests can prove, from the server's side, that
// no window was exceeded and nothing was sent during a Retry-After hold.
package emulator
