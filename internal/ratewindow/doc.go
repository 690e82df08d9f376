// Package ratewindow is an exact quota engine: N calls per rolling window W
// (any number of windows), a weighted tokens window, a minimum interval,
// concurrency slots, failure backoff and server Retry-After holds, answered
// by one allocation-free decision that says "yes", or "no, not before T,
// because R". A call may be counted until a later time than its admission
// (Defer), for one that may be sent any time up to then. It snapshots to and
// restores from a compact versioned encoding so a restarted process never
// exceeds a window.
//
// Every method takes the current time as an argument: the package never
// reads a clock, so tests run on a fixed timeline and the dispatcher injects
// its own clock.
package ratewindow
