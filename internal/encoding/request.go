package encoding

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/cardwire/cardwire/internal/streams"
)

// RegisterRequest registers an encoding: one the caller started with Seam
// (ActionAttemptID set), or one the worker starts.
type RegisterRequest struct {
	WorkspaceID     string `json:"workspace_id"`
	AcsEncoderID    string `json:"acs_encoder_id"`
	AcsCredentialID string `json:"acs_credential_id"`
	AccessMethodID  string `json:"access_method_id"`
	ActionAttemptID string `json:"action_attempt_id"`
	// RequestedAt is when the caller started the encode with Seam; it
	// defaults to now. Events that occurred before it do not confirm the
	// encoding, so a caller that registers after starting should pass it.
	RequestedAt *time.Time `json:"requested_at,omitempty"`
	// ConfirmTimeout overrides the first deadline (a Go duration, 5s up to
	// the maximum age).
	ConfirmTimeout string `json:"confirm_timeout,omitempty"`
}

// Starts reports whether the worker is to start the encode itself.
func (r RegisterRequest) Starts() bool { return r.ActionAttemptID == "" }

// Limits are what Validate checks a request against.
type Limits struct {
	DefaultWorkspaceID string
	SkewMargin         time.Duration
	// EarlyTTL bounds how far in the past requested_at may be: events are
	// kept for no longer.
	EarlyTTL       time.Duration
	ConfirmTimeout time.Duration
	MaxAge         time.Duration
}

// MinConfirmTimeout bounds a per-request confirm_timeout from below.
const MinConfirmTimeout = 5 * time.Second

const idMessage = "must be a Seam id (letters, digits, '-' or '_')"

// Validate fills the request's defaults (the workspace) and returns a
// *ValidationError naming the first field that is wrong.
func (r *RegisterRequest) Validate(l Limits, now time.Time) error {
	if r.WorkspaceID == "" {
		r.WorkspaceID = l.DefaultWorkspaceID
	}
	for _, f := range []struct{ name, value string }{
		{"workspace_id", r.WorkspaceID}, {"acs_encoder_id", r.AcsEncoderID},
	} {
		if f.value == "" {
			return &ValidationError{Field: f.name, Message: "is required"}
		}
		if !streams.ValidToken(f.value) {
			return &ValidationError{Field: f.name, Message: idMessage}
		}
	}
	switch {
	case r.AcsCredentialID == "" && r.AccessMethodID == "":
		return &ValidationError{Field: "acs_credential_id", Message: "one of acs_credential_id or access_method_id is required"}
	case r.AcsCredentialID != "" && r.AccessMethodID != "":
		return &ValidationError{Field: "access_method_id", Message: "give acs_credential_id or access_method_id, not both"}
	case r.AcsCredentialID != "" && !streams.ValidToken(r.AcsCredentialID):
		return &ValidationError{Field: "acs_credential_id", Message: idMessage}
	case r.AccessMethodID != "" && !streams.ValidToken(r.AccessMethodID):
		return &ValidationError{Field: "access_method_id", Message: idMessage}
	case r.ActionAttemptID != "" && !streams.ValidToken(r.ActionAttemptID):
		return &ValidationError{Field: "action_attempt_id", Message: idMessage}
	}
	if r.ConfirmTimeout != "" {
		d, err := time.ParseDuration(r.ConfirmTimeout)
		if err != nil || d < MinConfirmTimeout || d > l.MaxAge {
			return &ValidationError{Field: "confirm_timeout", Message: fmt.Sprintf("must be a duration from %s to %s", MinConfirmTimeout, l.MaxAge)}
		}
	}
	if r.RequestedAt != nil {
		switch {
		case r.RequestedAt.After(now.Add(l.SkewMargin)):
			return &ValidationError{Field: "requested_at", Message: "is in the future"}
		case r.RequestedAt.Before(now.Add(-l.EarlyTTL)):
			return &ValidationError{Field: "requested_at", Message: fmt.Sprintf("is more than %s ago", l.EarlyTTL)}
		}
	}
	return nil
}

// Fingerprint identifies the request body for an Idempotency-Key: the same
// key with another fingerprint is a different request.
func (r RegisterRequest) Fingerprint() string {
	b, _ := json.Marshal(r) // a struct of strings and a time always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// NewRecord is the pending record of a validated request, requested at
// requested (the request's RequestedAt, or now).
func (r RegisterRequest) NewRecord(id string, now time.Time, l Limits) Record {
	requested := now.UTC()
	if r.RequestedAt != nil {
		requested = r.RequestedAt.UTC()
	}
	confirm := l.ConfirmTimeout
	if r.ConfirmTimeout != "" {
		if d, err := time.ParseDuration(r.ConfirmTimeout); err == nil {
			confirm = d
		}
	}
	return Record{
		EncodingID:      id,
		WorkspaceID:     r.WorkspaceID,
		AcsEncoderID:    r.AcsEncoderID,
		AcsCredentialID: r.AcsCredentialID,
		AccessMethodID:  r.AccessMethodID,
		ActionAttemptID: r.ActionAttemptID,
		Status:          StatusPending,
		RequestedAt:     requested,
		Deadline:        requested.Add(confirm),
	}
}
