// Package controller holds the reconcilers. They stay short: each reads the
// objects it needs, computes conditions with small pure functions, and writes
// status once, only when it changed.
package controller
