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

// Error types of failed encodings settled by events.
const (
	ErrorCredentialDeleted     = "credential_deleted"
	ErrorCredentialInvalidated = "credential_invalidated"
	ErrorAccessMethodDeleted   = "access_method_deleted"
	ErrorAccessMethodRevoked   = "access_method_revoked"
	ErrorEncoderRemoved        = "encoder_removed"
)

// RecordError says why an encoding failed.
type RecordError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Record is one encode request: the value in ENCODINGS and the body of every
// outcome message.
type Record struct {
	EncodingID      string       `json:"encoding_id"`
	WorkspaceID     string       `json:"workspace_id"`
	AcsEncoderID    string       `json:"acs_encoder_id"`
	AcsCredentialID string       `json:"acs_credential_id,omitempty"`
	AccessMethodID  string       `json:"access_method_id,omitempty"`
	ActionAttemptID string       `json:"action_attempt_id,omitempty"`
	Status          Status       `json:"status"`
	IssueKind       string       `json:"issue_kind,omitempty"`
	RequestedAt     time.Time    `json:"requested_at"`
	Deadline        time.Time    `json:"deadline"`
	ResolvedAt      *time.Time   `json:"resolved_at,omitempty"`
	ResolvedBy      string       `json:"resolved_by,omitempty"`
	EventID         string       `json:"event_id,omitempty"`
	CardNumber      string       `json:"card_number,omitempty"`
	IssuedAt        *time.Time   `json:"issued_at,omitempty"`
	Error           *RecordError `json:"error,omitempty"`
}

// target is what events are keyed by: the credential, or the access method.
func (r Record) target() (kind, id string) {
	if r.AccessMethodID != "" {
		return kindAccessMethod, r.AccessMethodID
	}
	return kindCredential, r.AcsCredentialID
}
