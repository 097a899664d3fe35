// Package e2e runs the webhook receiver and the worker together against one
// embedded JetStream server: a signed webhook goes in, an outcome comes out.
// It holds only tests and benchmarks.
package e2e
