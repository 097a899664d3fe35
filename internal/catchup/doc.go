// Package catchup closes the gaps the webhook path leaves: it lists each
// workspace's events from Seam's event log (/events/list) since its
// checkpoint and stores every one in SEAM_EVENTS exactly as the receiver
// would (the same subject, headers and message id, streams.EventMsg), so
// that an event the webhooks missed (an outage, a bad deploy, a secret
// rotated in Seam but not yet here, a disabled endpoint) is stored once,
// and one already stored is a duplicate the stream drops.
//
// One worker runs it at a time, holding a lease (a key with a TTL in the
// CATCHUP bucket) that it renews every interval; when the holder dies the
// lease expires and another worker takes over. Each workspace's
// checkpoint (the last time fully covered) lives in the same bucket, so a
// restart resumes.
package catchup
