// Package memlimit keeps a binary's Go heap under its container's memory
// limit. The chart passes the limit through the downward API
// (resourceFieldRef limits.memory) in EnvVar; Set makes the Go runtime
// collect harder as the heap nears Fraction of it, instead of growing past
// the limit and being OOM-killed. An explicit GOMEMLIMIT wins.
package memlimit

import (
	"fmt"
	"runtime/debug"
	"strconv"
)

// EnvVar holds the container's memory limit in bytes.
const EnvVar = "LLMQUOTA_MEMORY_LIMIT"

// Fraction of the container limit given to the Go heap; the rest is for
// stacks, the runtime and memory outside Go's accounting.
const Fraction = 0.9

// Limit returns the soft limit for the Go runtime from the environment
// (getenv), and whether one applies.
func Limit(getenv func(string) string) (int64, bool, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false, nil // the runtime read it already
	}
	v := getenv(EnvVar)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, fmt.Errorf("%s=%q is not a positive number of bytes", EnvVar, v)
	}
	return int64(float64(n) * Fraction), true, nil
}

// Set applies Limit to the Go runtime and returns the limit set (0: none).
func Set(getenv func(string) string) (int64, error) {
	n, ok, err := Limit(getenv)
	if !ok {
		return 0, err
	}
	debug.SetMemoryLimit(n)
	return n, nil
}
