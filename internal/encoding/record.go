package encoding

import "time"

// Status is where an encoding is in its life.
type Status string

// Statuses; every one but StatusPending is terminal.
const (
	StatusPending  Status = "pending"
	StatusIssued   Status = "issued"
	StatusFailed   Status = "failed"
	StatusExpired  Status = "expired"
	StatusCanceled Status = "canceled"
)

// Terminal reports whether s is final.
func (s Status) Terminal() bool { return s != StatusPending }

// How an encoding was settled (Record.ResolvedBy).
const (
	ResolvedByWebhook   = "webhook"
	ResolvedByReconcile = "reconcile"
	ResolvedByCancel    = "cancel"
	ResolvedByDeadline  = "deadline"
)

// Error types of failed encodings that cardwire itself sets (Seam's own
// error types are kept verbatim).
const (
	ErrorCredentialDeleted     = "credential_deleted"
	ErrorCredentialInvalidated = "credential_invalidated"
	ErrorAccessMethodDeleted   = "access_method_deleted"
	ErrorAccessMethodRevoked   = "access_method_revoked"
	ErrorEncoderRemoved        = "encoder_removed"
	ErrorExpired               = "expired"
	// ErrorSuperseded fails a registration that lost a race for its
	// credential to another pending encoding.
	ErrorSuperseded = "encoding_pending"
)

// RecordError says why an encoding failed.
type RecordError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Record is one encode request: the value in ENCODINGS and the body of every
// outcome message.
type Record struct {
	EncodingID      string `json:"encoding_id"`
	WorkspaceID     string `json:"workspace_id"`
	AcsEncoderID    string `json:"acs_encoder_id"`
	AcsCredentialID string `json:"acs_credential_id,omitempty"`
	AccessMethodID  string `json:"access_method_id,omitempty"`
	ActionAttemptID string `json:"action_attempt_id,omitempty"`
	Status          Status `json:"status"`
	// Revision is 1 for the first stored record and one more for every
	// stored change; an outcome message carries it, so subscribers order
	// and dedupe by (encoding_id, revision).
	Revision    uint64       `json:"revision"`
	IssueKind   string       `json:"issue_kind,omitempty"`
	RequestedAt time.Time    `json:"requested_at"`
	Deadline    time.Time    `json:"deadline"`
	ResolvedAt  *time.Time   `json:"resolved_at,omitempty"`
	ResolvedBy  string       `json:"resolved_by,omitempty"`
	EventID     string       `json:"event_id,omitempty"`
	CardNumber  string       `json:"card_number,omitempty"`
	IssuedAt    *time.Time   `json:"issued_at,omitempty"`
	Error       *RecordError `json:"error,omitempty"`
}

// Target is what events about this record are keyed by.
func (r Record) Target() TargetRef {
	if r.AccessMethodID != "" {
		return TargetRef{WorkspaceID: r.WorkspaceID, Kind: KindAccessMethod, ID: r.AccessMethodID}
	}
	return TargetRef{WorkspaceID: r.WorkspaceID, Kind: KindCredential, ID: r.AcsCredentialID}
}

// settle moves r to a final status at now; the caller sets the rest.
func (r Record) settle(status Status, by string, now time.Time) Record {
	at := now.UTC()
	r.Status, r.ResolvedBy, r.ResolvedAt = status, by, &at
	return r
}

// Cancel returns r canceled, or false if r is already final.
func Cancel(r Record, now time.Time) (Record, bool) {
	if r.Status.Terminal() {
		return r, false
	}
	return r.settle(StatusCanceled, ResolvedByCancel, now), true
}

// Fail returns r failed with e, or false if r is already final.
func Fail(r Record, by string, e RecordError, now time.Time) (Record, bool) {
	if r.Status.Terminal() {
		return r, false
	}
	next := r.settle(StatusFailed, by, now)
	next.Error = &e
	return next, true
}
