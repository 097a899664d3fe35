package events

import (
	"encoding/json"
	"errors"

	"github.com/cardwire/cardwire/internal/streams"
)

// Envelope is the part of a Seam event that every event type carries. The
// webhook body is the bare event object; all other fields depend on the
// event type and are left to consumers of the stream.
type Envelope struct {
	EventID     string `json:"event_id"`
	EventType   string `json:"event_type"`
	WorkspaceID string `json:"workspace_id"`
	OccurredAt  string `json:"occurred_at"`
	CreatedAt   string `json:"created_at"`
}

// ParseEnvelope reads the envelope of a Seam event, ignoring unknown fields.
// It fails with an *EnvelopeError when body is not a JSON object, a field has
// the wrong type, or event_id, event_type or workspace_id is missing; the
// fields it could read are returned all the same (the receiver picks the
// secrets to verify a body with by its workspace_id, even one it will
// quarantine).
func ParseEnvelope(body []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return env, &EnvelopeError{Reason: QuarantineInvalidField, Detail: typeErr.Field + " has type " + typeErr.Value}
		}
		return Envelope{}, &EnvelopeError{Reason: QuarantineNotJSON, Detail: err.Error()}
	}
	switch {
	case env.EventID == "":
		return env, &EnvelopeError{Reason: QuarantineMissingField, Detail: "event_id"}
	case env.EventType == "":
		return env, &EnvelopeError{Reason: QuarantineMissingField, Detail: "event_type"}
	case env.WorkspaceID == "":
		return env, &EnvelopeError{Reason: QuarantineMissingField, Detail: "workspace_id"}
	}
	if !streams.ValidToken(env.EventID) {
		// It becomes a header and, in the worker, part of a KV key.
		return env, &EnvelopeError{Reason: QuarantineInvalidField, Detail: "event_id is not a plain id"}
	}
	return env, nil
}

// Subject is the subject env is published on: seam.events.<workspace_id>.<event_type>.
// It fails with an *EnvelopeError if either value is not a valid subject
// token, so a hostile or broken value never becomes a subject (or a
// wildcard).
func (env Envelope) Subject() (string, error) {
	subj, err := streams.EventSubject(env.WorkspaceID, env.EventType)
	if err != nil {
		return "", &EnvelopeError{Reason: QuarantineInvalidSubject, Detail: err.Error()}
	}
	return subj, nil
}
