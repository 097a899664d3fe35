// Package encoding owns the life of an encode request: the record and its
// state machine, the store over the ENCODINGS KV bucket (compare-and-set
// updates, index keys, the early-events area), the processor that settles
// encodings from Seam events on SEAM_EVENTS, the outcome publisher, and the
// worker's /v1/encodings API.
//
// An encoding is pending until one event or call settles it; the first
// terminal state wins and is final. Each Seam event acts once: a record
// remembers the event that settled it, and every change is a KV update
// against the revision it was computed from.
package encoding
