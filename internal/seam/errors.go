package seam

import (
	"encoding/json"
	"errors"
	"fmt"
)

// APIError is Seam's error envelope, or a non-JSON error answer, with the
// HTTP status and the seam-request-id to quote to Seam's support.
type APIError struct {
	Status    int
	Type      string
	Message   string
	RequestID string
	Data      json.RawMessage
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("seam: %d %s: %s", e.Status, e.Type, e.Message)
	if e.RequestID != "" {
		s += " (seam-request-id " + e.RequestID + ")"
	}
	return s
}

// Temporary reports whether retrying the same request later may succeed.
func (e *APIError) Temporary() bool { return e.Status == 429 || e.Status >= 500 }

// ErrNoAPIKey is returned by a request of a client without credentials,
// and by With without an API key.
var ErrNoAPIKey = errors.New("seam: no API key")

// ErrUnavailable wraps failures that never reached an answer from Seam
// (timeouts, connection errors): the request may or may not have been
// carried out.
var ErrUnavailable = errors.New("seam: unavailable")
