package encoding

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cardwire/cardwire/internal/streams"
)

// What an event is about.
const (
	kindCredential   = "cred"
	kindAccessMethod = "am"
	kindEncoder      = "encoder"
)

// Event is the part of a Seam event the worker acts on.
type Event struct {
	EventID         string    `json:"event_id"`
	EventType       string    `json:"event_type"`
	WorkspaceID     string    `json:"workspace_id"`
	OccurredAt      time.Time `json:"occurred_at"`
	AcsCredentialID string    `json:"acs_credential_id,omitempty"`
	AccessMethodID  string    `json:"access_method_id,omitempty"`
	AcsEncoderID    string    `json:"acs_encoder_id,omitempty"`
}

// ErrBadEvent reports an event body the worker can never act on; it is
// dead-lettered at once rather than retried.
var ErrBadEvent = errors.New("bad event")

// ParseEvent reads a Seam event body. It fails with ErrBadEvent when the body
// is not JSON, an id is missing or not a plain token, or occurred_at is not
// an RFC 3339 time. Unknown fields are ignored.
func ParseEvent(body []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrBadEvent, err)
	}
	if ev.OccurredAt.IsZero() {
		return Event{}, fmt.Errorf("%w: occurred_at missing", ErrBadEvent)
	}
	for name, v := range map[string]string{"event_id": ev.EventID, "workspace_id": ev.WorkspaceID} {
		if !streams.ValidToken(v) {
			return Event{}, fmt.Errorf("%w: %s missing or not a plain id", ErrBadEvent, name)
		}
	}
	kind, id := ev.target()
	if kind != "" && !streams.ValidToken(id) {
		return Event{}, fmt.Errorf("%w: %s has no valid subject id", ErrBadEvent, ev.EventType)
	}
	return ev, nil
}

// target is the record kind and id the event is keyed by, or "" for an
// event type the worker does not act on.
func (ev Event) target() (kind, id string) {
	switch {
	case strings.HasPrefix(ev.EventType, "acs_credential."):
		return kindCredential, ev.AcsCredentialID
	case strings.HasPrefix(ev.EventType, "access_method."):
		return kindAccessMethod, ev.AccessMethodID
	case ev.EventType == "acs_encoder.removed":
		return kindEncoder, ev.AcsEncoderID
	}
	return "", ""
}

// effect is what an event does to a pending encoding it is about.
type effect struct {
	status    Status
	issueKind string
	errType   string
}

// effectOf returns the effect of an event type, or false if it has none
// (access_method.card_encoding_required, acs_credential.created, …).
func effectOf(eventType string) (effect, bool) {
	switch eventType {
	case "acs_credential.issued", "access_method.issued":
		return effect{status: StatusIssued, issueKind: "issued"}, true
	case "acs_credential.reissued", "access_method.reissued":
		return effect{status: StatusIssued, issueKind: "reissued"}, true
	case "acs_credential.deleted":
		return effect{status: StatusFailed, errType: ErrorCredentialDeleted}, true
	case "acs_credential.invalidated":
		return effect{status: StatusFailed, errType: ErrorCredentialInvalidated}, true
	case "access_method.deleted":
		return effect{status: StatusFailed, errType: ErrorAccessMethodDeleted}, true
	case "access_method.revoked":
		return effect{status: StatusFailed, errType: ErrorAccessMethodRevoked}, true
	case "acs_encoder.removed":
		return effect{status: StatusFailed, errType: ErrorEncoderRemoved}, true
	}
	return effect{}, false
}
