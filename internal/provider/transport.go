package provider

import (
	"net"
	"net/http"
	"time"
)

// NewHTTPClient returns the HTTP client for a provider that runs up to
// concurrency calls at once. Its transport keeps that many idle
// connections to the provider's host, so every call after the first
// concurrency reuses a kept-alive connection: Go's default keeps 2, and a
// provider at 64 concurrent calls would then re-dial (a TLS handshake
// against a real provider) for most of them. The client has no timeout of
// its own: each call's deadline comes from its context.
func NewHTTPClient(concurrency int) *http.Client {
	concurrency = max(concurrency, 2)
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          concurrency,
		MaxIdleConnsPerHost:   concurrency,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}}
}
