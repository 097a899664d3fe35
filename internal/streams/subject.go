package streams

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidToken reports a value that cannot be used as part of a subject.
var ErrInvalidToken = errors.New("invalid subject token")

// maxTokenLen bounds a single token; Seam ids are UUIDs and event types are
// a few words, so anything longer is not a Seam value.
const maxTokenLen = 128

// ValidToken reports whether s can be one NATS subject token as cardwire uses
// them: 1 to 128 bytes of ASCII letters, digits, '_' or '-'. That is stricter
// than NATS itself (which only forbids '.', '*', '>' and whitespace) so that a
// subject is always safe to print, filter on and use as a KV key part.
func ValidToken(s string) bool {
	if s == "" || len(s) > maxTokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validDotted reports whether s is one or more valid tokens joined by dots,
// as Seam event types are (acs_credential.issued,
// access_code.unmanaged.created).
func validDotted(s string) bool {
	if s == "" || len(s) > 4*maxTokenLen {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if !ValidToken(tok) {
			return false
		}
	}
	return true
}

// EventSubject returns seam.events.<workspaceID>.<eventType>. The event type
// keeps its dots, so it spans several tokens. It fails with ErrInvalidToken
// unless workspaceID is one valid token and every part of eventType is.
func EventSubject(workspaceID, eventType string) (string, error) {
	if !ValidToken(workspaceID) {
		return "", fmt.Errorf("workspace_id %q: %w", truncate(workspaceID), ErrInvalidToken)
	}
	if !validDotted(eventType) {
		return "", fmt.Errorf("event_type %q: %w", truncate(eventType), ErrInvalidToken)
	}
	return EventsSubjectPrefix + "." + workspaceID + "." + eventType, nil
}

// truncate keeps error messages short when the input is hostile.
func truncate(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
