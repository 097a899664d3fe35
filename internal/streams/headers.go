package streams

// Header keys set on every message in EventsStream. The JetStream message id
// (Nats-Msg-Id) is the webhook id as well; these copies keep it readable after
// the dedupe window has passed.
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
	// HeaderDeadLetterDeliveries is how often it was delivered before.
	HeaderDeadLetterDeliveries = "Cardwire-Dead-Letter-Deliveries"
	// HeaderTraceparent is the W3C trace context header, copied from the
	// webhook request when it had one.
	HeaderTraceparent = "traceparent"
)
