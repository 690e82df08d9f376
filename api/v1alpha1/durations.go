package v1alpha1

import "time"

// Durations are integers with their unit in the field's name
// (batchDelayMilliseconds, gpuCleanupIntervalSeconds), as the Kubernetes
// API conventions ask, so no client has to parse Go duration strings.

// Milliseconds is a ...Milliseconds field as a duration, or def when unset.
func Milliseconds(v *int32, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	return time.Duration(*v) * time.Millisecond
}

// Seconds is a ...Seconds field as a duration, or def when unset.
func Seconds(v *int32, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	return time.Duration(*v) * time.Second
}
