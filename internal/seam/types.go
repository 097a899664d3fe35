package seam

import (
	"encoding/json"
	"fmt"
	"time"
)

// Action attempt statuses.
const (
	AttemptPending = "pending"
	AttemptSuccess = "success"
	AttemptError   = "error"
)

// ActionTypeEncodeCredential is the action type of both encode endpoints.
const ActionTypeEncodeCredential = "ENCODE_CREDENTIAL"

// ActionAttempt is Seam's action attempt. Result is kept raw: for an
// ENCODE_CREDENTIAL success it is an acs_credential (see Credential).
type ActionAttempt struct {
	ActionAttemptID string              `json:"action_attempt_id"`
	ActionType      string              `json:"action_type"`
	Status          string              `json:"status"`
	Result          json.RawMessage     `json:"result"`
	Error           *ActionAttemptError `json:"error"`
}

// ActionAttemptError is why an attempt failed. Type is kept verbatim: Seam
// adds types over time (encoding_interrupted, encoder_not_online, …) and an
// unknown one is still a terminal failure.
type ActionAttemptError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// Credential decodes the acs_credential of a successful encode.
func (a ActionAttempt) Credential() (Credential, error) {
	var c Credential
	if a.Status != AttemptSuccess || len(a.Result) == 0 || string(a.Result) == "null" {
		return c, fmt.Errorf("action attempt %s has no result (status %s)", a.ActionAttemptID, a.Status)
	}
	if err := json.Unmarshal(a.Result, &c); err != nil {
		return c, fmt.Errorf("action attempt %s result: %w", a.ActionAttemptID, err)
	}
	if c.AcsCredentialID == "" {
		return c, fmt.Errorf("action attempt %s result is not a credential", a.ActionAttemptID)
	}
	return c, nil
}

// Credential is the part of Seam's acs_credential cardwire uses.
type Credential struct {
	AcsCredentialID string     `json:"acs_credential_id"`
	WorkspaceID     string     `json:"workspace_id"`
	AcsSystemID     string     `json:"acs_system_id"`
	AcsUserID       string     `json:"acs_user_id,omitempty"`
	AccessMethod    string     `json:"access_method"`
	IsIssued        bool       `json:"is_issued"`
	IssuedAt        *time.Time `json:"issued_at"`
	CardNumber      *string    `json:"card_number"`
	CreatedAt       time.Time  `json:"created_at"`
	ExternalType    string     `json:"external_type,omitempty"`
}

// Encoder is Seam's acs_encoder.
type Encoder struct {
	AcsEncoderID       string         `json:"acs_encoder_id"`
	AcsSystemID        string         `json:"acs_system_id"`
	ConnectedAccountID string         `json:"connected_account_id"`
	WorkspaceID        string         `json:"workspace_id"`
	DisplayName        string         `json:"display_name"`
	CreatedAt          time.Time      `json:"created_at"`
	Errors             []EncoderError `json:"errors"`
}

// EncoderError is one entry of Encoder.Errors (e.g. acs_encoder_removed).
type EncoderError struct {
	CreatedAt time.Time `json:"created_at"`
	ErrorCode string    `json:"error_code"`
	Message   string    `json:"message"`
}

// EncodeRequest starts an encode: the encoder and either the credential or
// the access method.
type EncodeRequest struct {
	AcsEncoderID    string `json:"acs_encoder_id"`
	AcsCredentialID string `json:"acs_credential_id,omitempty"`
	AccessMethodID  string `json:"access_method_id,omitempty"`
}

// ListEncodersRequest selects encoders by id or by access system.
type ListEncodersRequest struct {
	AcsEncoderIDs []string `json:"acs_encoder_ids,omitempty"`
	AcsSystemID   string   `json:"acs_system_id,omitempty"`
	AcsSystemIDs  []string `json:"acs_system_ids,omitempty"`
	Limit         int      `json:"limit,omitempty"`
	PageCursor    string   `json:"page_cursor,omitempty"`
}

// Pagination is Seam's list pagination.
type Pagination struct {
	HasNextPage    bool    `json:"has_next_page"`
	NextPageCursor *string `json:"next_page_cursor"`
}
