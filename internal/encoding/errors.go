package encoding

import (
	"errors"
	"fmt"
)

// ErrNotFound reports an encoding id with no record.
var ErrNotFound = errors.New("encoding not found")

// ErrBadEvent reports an event body the worker can never act on; it is
// dead-lettered at once rather than retried.
var ErrBadEvent = errors.New("bad event")

// ErrTrackOnly reports a request to start an encoding (no
// action_attempt_id) on a worker without a Seam API key.
var ErrTrackOnly = errors.New("starting encodings needs SEAM_API_KEY (or SEAM_API_KEY_FILE); without it, start the encode with Seam yourself and pass action_attempt_id")

// ErrIdempotencyKeyReused reports an Idempotency-Key sent again with a
// different request body.
var ErrIdempotencyKeyReused = errors.New("this Idempotency-Key was used with a different request body")

// OpenEncodingError reports that the credential or access method already has
// a pending encoding; EncodingID is that encoding.
type OpenEncodingError struct {
	EncodingID string
}

func (e *OpenEncodingError) Error() string {
	return "an encoding is already pending for this credential: " + e.EncodingID
}

// ValidationError reports a request field that is missing or malformed.
type ValidationError struct {
	Field   string
	Message string
}

func (e *ValidationError) Error() string { return e.Field + ": " + e.Message }

// TerminalError reports an operation on an encoding that is already final.
type TerminalError struct {
	EncodingID string
	Status     Status
}

func (e *TerminalError) Error() string {
	return fmt.Sprintf("encoding %s is already %s", e.EncodingID, e.Status)
}
