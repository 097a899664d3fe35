package events

// Reasons a delivery fails verification; each is a label value of the
// request counter.
const (
	ReasonMissingHeaders   = "missing_headers"
	ReasonInvalidHeaders   = "invalid_headers"
	ReasonTimestampTooOld  = "timestamp_too_old"
	ReasonTimestampTooNew  = "timestamp_too_new"
	ReasonNoMatchingSecret = "bad_signature"
	// ReasonUnknownWorkspace: the body names no configured workspace (or
	// none at all), so there is no secret to verify it with.
	ReasonUnknownWorkspace = "unknown_workspace"
)

// SignatureError reports a delivery that did not pass verification. Reason is
// one of the Reason* constants.
type SignatureError struct {
	Reason string
}

func (e *SignatureError) Error() string { return "webhook signature: " + e.Reason }

// Reasons a verified delivery is quarantined instead of published as an event.
const (
	QuarantineNotJSON        = "not_json"
	QuarantineInvalidField   = "invalid_field"
	QuarantineMissingField   = "missing_field"
	QuarantineInvalidSubject = "invalid_subject_token"
)

// EnvelopeError reports a verified body that is not a usable Seam event.
// Reason is one of the Quarantine* constants; Detail is for the log line.
type EnvelopeError struct {
	Reason string
	Detail string
}

func (e *EnvelopeError) Error() string { return "seam event envelope: " + e.Reason + ": " + e.Detail }
