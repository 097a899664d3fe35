// Package seam is the client for the few Seam Connect endpoints cardwire
// calls: starting an encode, reading action attempts (one or a batch),
// reading a credential, listing encoders, reading the event log
// (/events/list) and managing webhooks (/webhooks/create, list, get,
// delete). It speaks Seam's shapes: a JSON POST body, the
// {"<key>": …, "ok": true} success envelope and the
// {"error": {"type", "message"}, "ok": false} error envelope, which becomes
// an *APIError.
//
// Reads are retried with jittered backoff on 429 (honouring Retry-After),
// 5xx and network errors. An encode is never retried: a second encode can
// write a second card. Nor are a webhook's create and delete.
package seam
