// Package version holds the version the binaries were built as. `make
// images` stamps it from `git describe` through the linker
// (-X github.com/llmquota/llmquota/internal/version.Version=...); a plain
// `go build` says "dev".
package version

// Version is the build's version.
var Version = "dev"
