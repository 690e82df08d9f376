// Package provider holds one client per LLM API (Gemini, Anthropic,
// OpenAI-compatible, Ollama) behind one interface. Every outcome is
// classified (rate limited with its retry time, server error, timeout,
// connection failure, bad request, auth failure, context too long), token
// usage is parsed, and the servers' rate-limit headers are exposed so the
// dispatcher can tighten its pacing. API keys never appear in errors.
package provider
