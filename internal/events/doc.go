// Package events is cardwire's public edge. It verifies Seam's Svix-signed
// webhooks on the raw body, reads just the event envelope, and publishes the
// unchanged body to the SEAM_EVENTS stream, answering Seam with 204 only after
// JetStream has acknowledged it.
//
// What it answers, and why:
//
//	204  stored (or already stored: a duplicate webhook id), or verified but
//	     unusable and stored on the quarantine subject, so Svix stops retrying
//	401  missing or bad signature headers, no matching signature, timestamp
//	     outside the tolerance; nothing is published
//	413  body over the limit; nothing is read past the limit
//	429  more publishes in flight than the bound; Svix retries later
//	503  NATS or the stream cannot take the message; Svix retries later
package events
