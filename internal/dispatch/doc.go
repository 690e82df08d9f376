// Package dispatch runs calls to one provider under its quota. One
// Dispatcher per LLMProvider owns the provider's ratewindow.Limiter and
// serves the admitted batches: by priority, then round-robin across
// namespaces, then the oldest batch of a namespace first (a younger one
// fills in only while no namespace's oldest can send), FIFO within a
// batch. Each batch's batchSize and batchDelay shape its own flow; the
// provider's windows, interval, concurrency and backoff hold for all
// batches together. Failed calls are retried with the limiter's backoff;
// what this provider cannot serve goes to its fallback.
package dispatch
