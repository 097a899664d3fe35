package streams

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EventMsgIDPrefix starts the JetStream message id of an event in
// EventsStream: evt:<event_id>. Every producer (the receiver, the
// catch-up) uses it, so the same event is stored once inside the stream's
// duplicate window however it arrives: a Svix retry, a second webhook
// during a secret rotation, or the catch-up finding it in Seam's log.
const EventMsgIDPrefix = "evt:"

// Event is what a producer knows of one Seam event it stores.
type Event struct {
	// EventID, EventType and WorkspaceID come from the (verified) body.
	EventID, EventType, WorkspaceID string
	// WebhookID and WebhookTimestamp are the delivery's (svix-id,
	// svix-timestamp); empty when the event came another way (catch-up).
	WebhookID, WebhookTimestamp string
	// Traceparent is the delivery's W3C trace context, if any.
	Traceparent string
}

// EventMsg is the message storing body, the raw event, on its subject
// (seam.events.<workspace_id>.<event_type>) with the event headers and the
// message id evt:<event_id>. It fails if a value cannot be a subject token.
func EventMsg(body []byte, e Event) (*nats.Msg, error) {
	subject, err := EventSubject(e.WorkspaceID, e.EventType)
	if err != nil {
		return nil, err
	}
	if !ValidToken(e.EventID) {
		return nil, ErrInvalidToken
	}
	// Header values share one backing array: the receiver builds one of
	// these for every webhook.
	vals := [...]string{EventMsgIDPrefix + e.EventID, EventsStream, e.EventID, e.EventType, e.WorkspaceID, e.WebhookID, e.WebhookTimestamp, e.Traceparent}
	h := make(nats.Header, 8)
	h[jetstream.MsgIDHeader] = vals[0:1:1]
	// A stream that does not capture the subject must not store it silently.
	h[jetstream.ExpectedStreamHeader] = vals[1:2:2]
	h[HeaderEventID] = vals[2:3:3]
	h[HeaderEventType] = vals[3:4:4]
	h[HeaderWorkspaceID] = vals[4:5:5]
	if e.WebhookID != "" {
		h[HeaderWebhookID] = vals[5:6:6]
		h[HeaderWebhookTimestamp] = vals[6:7:7]
	}
	if e.Traceparent != "" && len(e.Traceparent) <= 128 {
		h[HeaderTraceparent] = vals[7:8:8]
	}
	return &nats.Msg{Subject: subject, Data: body, Header: h}, nil
}

// QuarantineMsg is the message keeping a verified delivery that is not a
// usable event, with the reason. It has no event id to dedupe on, so its
// message id is the webhook id: a retry of the same delivery is stored
// once.
func QuarantineMsg(body []byte, webhookID, webhookTimestamp, reason, traceparent string) *nats.Msg {
	h := nats.Header{
		jetstream.MsgIDHeader:          {webhookID},
		jetstream.ExpectedStreamHeader: {EventsStream},
		HeaderWebhookID:                {webhookID},
		HeaderWebhookTimestamp:         {webhookTimestamp},
		HeaderQuarantineReason:         {reason},
	}
	if traceparent != "" && len(traceparent) <= 128 {
		h[HeaderTraceparent] = []string{traceparent}
	}
	return &nats.Msg{Subject: QuarantineSubject, Data: body, Header: h}
}
