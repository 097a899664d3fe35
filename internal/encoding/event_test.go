package encoding_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

func TestParseEvent(t *testing.T) {
	testCases := []struct {
		Name string
		Body string
		OK   bool
	}{
		{"credential issued", `{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"w","occurred_at":"2026-11-24T10:00:00.123Z","acs_credential_id":"c1","extra":{"x":1}}`, true},
		{"encoder removed", `{"event_id":"e1","event_type":"acs_encoder.removed","workspace_id":"w","occurred_at":"2026-11-24T10:00:00Z","acs_encoder_id":"enc"}`, true},
		{"other type, no subject id needed", `{"event_id":"e1","event_type":"lock.locked","workspace_id":"w","occurred_at":"2026-11-24T10:00:00Z"}`, true},
		{"not json", `nope`, false},
		{"no occurred_at", `{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"w","acs_credential_id":"c1"}`, false},
		{"bad occurred_at", `{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"w","occurred_at":"yesterday","acs_credential_id":"c1"}`, false},
		{"credential event without credential", `{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"w","occurred_at":"2026-11-24T10:00:00Z"}`, false},
		{"key-unsafe credential id", `{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"w","occurred_at":"2026-11-24T10:00:00Z","acs_credential_id":"a.b"}`, false},
		{"no event id", `{"event_type":"acs_credential.issued","workspace_id":"w","occurred_at":"2026-11-24T10:00:00Z","acs_credential_id":"c"}`, false},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			_, err := encoding.ParseEvent([]byte(c.Body))
			if c.OK {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, encoding.ErrBadEvent)
			}
		})
	}
}

// FuzzParseEvent: never panics; fails only with ErrBadEvent; a parsed event
// has its ids and a time.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"event_id":"e1","event_type":"acs_credential.issued","workspace_id":"w","occurred_at":"2026-11-24T10:00:00Z","acs_credential_id":"c1"}`))
	f.Add([]byte(`{"event_id":"e1","event_type":"access_method.revoked","workspace_id":"w","occurred_at":"2026-11-24T10:00:00+02:00","access_method_id":"a"}`))
	f.Add([]byte(`{"event_id":"e1","event_type":"acs_encoder.removed","workspace_id":"w","occurred_at":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := encoding.ParseEvent(body)
		if err != nil {
			if !errors.Is(err, encoding.ErrBadEvent) {
				t.Fatalf("error %v is not ErrBadEvent", err)
			}
			return
		}
		if ev.EventID == "" || ev.WorkspaceID == "" || ev.OccurredAt.IsZero() {
			t.Fatalf("parsed event lacks a field: %+v", ev)
		}
	})
}
