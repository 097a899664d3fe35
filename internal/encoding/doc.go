// Package encoding is the pure domain of an encode request: the record and
// its statuses, Seam events, which encoding an event can belong to
// (attribution), what an event does to a record (Apply), what the answer
// Seam gives at a deadline does (Decide), request validation, and the typed
// errors callers branch on. It does no I/O and imports no NATS package, so
// every rule is a function a table test can call; internal/store keeps the
// values and internal/worker runs the rules.
//
// An encoding is pending until one event or answer settles it; the first
// terminal state wins and is final. Every stored change of a record has a
// revision, one higher than the one before, and produces one outcome.
package encoding
