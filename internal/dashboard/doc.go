// Package dashboard turns LLMProviders and InferenceBatches into the view
// `kubectl llmquota top` draws, the original report's planned monitoring
// dashboard: per provider its minute/hour/day windows with the time until a
// slot frees, cost against alerts and budgets, rate-limit and backoff
// state, and Ollama endpoints with GPU memory; per batch its progress, ETA,
// failures and why it waits. Build is pure (the objects and a clock in, a
// Snapshot out) and Render draws a Snapshot; the plugin's command lists the
// objects.
package dashboard
