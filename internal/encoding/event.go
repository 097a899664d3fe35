package encoding

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cardwire/cardwire/internal/streams"
)

// What an event is about (TargetRef.Kind).
const (
	KindCredential   = "cred"
	KindAccessMethod = "am"
	KindEncoder      = "encoder"
)

// TargetRef names what events are keyed by: a credential, an access method
// or an encoder, in a workspace. Every part is a valid subject token.
type TargetRef struct {
	WorkspaceID string
	Kind        string
	ID          string
}

func (t TargetRef) String() string { return t.Kind + ":" + t.ID }

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
	for _, f := range []struct{ name, v string }{{"event_id", ev.EventID}, {"workspace_id", ev.WorkspaceID}} {
		if !streams.ValidToken(f.v) {
			return Event{}, fmt.Errorf("%w: %s missing or not a plain id", ErrBadEvent, f.name)
		}
	}
	if t, ok := ev.Target(); ok && !streams.ValidToken(t.ID) {
		return Event{}, fmt.Errorf("%w: %s has no valid subject id", ErrBadEvent, ev.EventType)
	}
	return ev, nil
}

// Target is what the event is keyed by, or false for an event type the
// worker does not act on.
func (ev Event) Target() (TargetRef, bool) {
	t := TargetRef{WorkspaceID: ev.WorkspaceID}
	switch {
	case strings.HasPrefix(ev.EventType, "acs_credential."):
		t.Kind, t.ID = KindCredential, ev.AcsCredentialID
	case strings.HasPrefix(ev.EventType, "access_method."):
		t.Kind, t.ID = KindAccessMethod, ev.AccessMethodID
	case ev.EventType == "acs_encoder.removed":
		t.Kind, t.ID = KindEncoder, ev.AcsEncoderID
	default:
		return TargetRef{}, false
	}
	return t, true
}

// Effect is what an event does to a pending encoding it belongs to.
type Effect struct {
	Status    Status
	IssueKind string
	ErrType   string
}

// Success reports an effect that issues the encoding.
func (e Effect) Success() bool { return e.Status == StatusIssued }

// EffectOf returns the effect of an event type, or false if it has none
// (access_method.card_encoding_required, acs_credential.created, …).
func EffectOf(eventType string) (Effect, bool) {
	switch eventType {
	case "acs_credential.issued", "access_method.issued":
		return Effect{Status: StatusIssued, IssueKind: "issued"}, true
	case "acs_credential.reissued", "access_method.reissued":
		return Effect{Status: StatusIssued, IssueKind: "reissued"}, true
	case "acs_credential.deleted":
		return Effect{Status: StatusFailed, ErrType: ErrorCredentialDeleted}, true
	case "acs_credential.invalidated":
		return Effect{Status: StatusFailed, ErrType: ErrorCredentialInvalidated}, true
	case "access_method.deleted":
		return Effect{Status: StatusFailed, ErrType: ErrorAccessMethodDeleted}, true
	case "access_method.revoked":
		return Effect{Status: StatusFailed, ErrType: ErrorAccessMethodRevoked}, true
	case "acs_encoder.removed":
		return Effect{Status: StatusFailed, ErrType: ErrorEncoderRemoved}, true
	}
	return Effect{}, false
}

// HoldFor is how long after its arrival an event waits before it is
// applied: failure-type events wait out the order grace, so that a success
// that occurred earlier but arrives a little later still wins; successes
// are applied at once.
func HoldFor(ev Event, arrived, now time.Time, grace time.Duration) time.Duration {
	eff, ok := EffectOf(ev.EventType)
	if !ok || eff.Success() {
		return 0
	}
	return max(arrived.Add(grace).Sub(now), 0)
}
