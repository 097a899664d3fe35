// Package worker runs the encode-request lifecycle on NATS, wired once for
// cmd/worker and every test: the intake of Seam events from SEAM_EVENTS,
// the /v1/encodings API, the timers (deadlines, card-number retries, the
// end of a kept event's wait), reconcile at the deadline through Seam, and
// the outbox, the one publisher of outcomes, which turns every stored
// record revision into a message on ENCODING_EVENTS.
//
// The rules live in internal/encoding and the keys in internal/store; this
// package decides when to run them and what to acknowledge.
package worker
