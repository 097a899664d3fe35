package streams

// Header keys set on every message in EventsStream. The JetStream message id
// (Nats-Msg-Id) is evt:<event_id> (the webhook id for a quarantined
// delivery); Seam-Event-Id keeps the event id readable after the dedupe
// window has passed, for subscribers to apply each event once. The webhook
// headers are absent from events the catch-up stored.
const (
	HeaderWebhookID        = "Seam-Webhook-Id"
	HeaderWebhookTimestamp = "Seam-Webhook-Timestamp"
	HeaderEventID          = "Seam-Event-Id"
	HeaderEventType        = "Seam-Event-Type"
	HeaderWorkspaceID      = "Seam-Workspace-Id"
	// HeaderQuarantineReason says why a delivery went to QuarantineSubject.
	HeaderQuarantineReason = "Cardwire-Quarantine-Reason"
	// HeaderDeadLetterReason says why a consumer gave up on an event.
	HeaderDeadLetterReason = "Cardwire-Dead-Letter-Reason"
	// HeaderOriginalSubject is the subject a dead-lettered event came on.
	HeaderOriginalSubject = "Cardwire-Original-Subject"
	// HeaderRetryOf is set on an event republished from a dead letter
	// (cardwire deadletters retry): the dead letter's stream sequence.
	HeaderRetryOf = "Cardwire-Retry-Of"
	// HeaderDeadLetterDeliveries is how often it was delivered before.
	HeaderDeadLetterDeliveries = "Cardwire-Dead-Letter-Deliveries"
	// HeaderTraceparent is the W3C trace context header, copied from the
	// webhook request when it had one.
	HeaderTraceparent = "traceparent"
)

// HeaderKVOperation is the header in which a KV bucket's marker message
// names itself (KVDelete for a delete; nats.go keeps both names to
// itself): the outbox skips markers, the pending index writes and skips
// them.
const (
	HeaderKVOperation = "KV-Operation"
	KVDelete          = "DEL"
)
