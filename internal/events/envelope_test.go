package events_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/streams"
)

const testWorkspace = "6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11"

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParseEnvelopeGolden(t *testing.T) {
	testCases := []struct {
		File    string
		ID      string
		Type    string
		Subject string
	}{
		{"acs_credential_issued.json", "8d4f1a62-1f0c-4b5e-9d59-5a2b7c3e9f01", "acs_credential.issued", "seam.events." + testWorkspace + ".acs_credential.issued"},
		{"acs_credential_reissued.json", "1b5e8f03-7a2c-4d91-b6e4-0c3a9d7f2e12", "acs_credential.reissued", "seam.events." + testWorkspace + ".acs_credential.reissued"},
		{"access_method_issued.json", "c3d2e1f0-9a8b-4c7d-8e6f-5a4b3c2d1e00", "access_method.issued", "seam.events." + testWorkspace + ".access_method.issued"},
		{"acs_encoder_removed.json", "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", "acs_encoder.removed", "seam.events." + testWorkspace + ".acs_encoder.removed"},
		// Unknown types and fields are accepted: every Seam event is stored.
		{"future_event_type.json", "e0e0e0e0-1111-4222-8333-444455556666", "acs_credential.some_future_thing", "seam.events." + testWorkspace + ".acs_credential.some_future_thing"},
	}
	for _, c := range testCases {
		t.Run(c.File, func(t *testing.T) {
			env, err := events.ParseEnvelope(golden(t, c.File))
			require.NoError(t, err)
			require.Equal(t, c.ID, env.EventID)
			require.Equal(t, c.Type, env.EventType)
			require.Equal(t, testWorkspace, env.WorkspaceID)
			require.NotEmpty(t, env.OccurredAt)
			require.NotEmpty(t, env.CreatedAt)
			subj, err := env.Subject()
			require.NoError(t, err)
			require.Equal(t, c.Subject, subj)
		})
	}
}

func TestParseEnvelopeRejects(t *testing.T) {
	testCases := []struct {
		Name   string
		Body   string
		Reason string
	}{
		{"empty body", ``, events.QuarantineNotJSON},
		{"not json", `hello`, events.QuarantineNotJSON},
		{"truncated json", `{"event_id":"a"`, events.QuarantineNotJSON},
		{"array", `[1,2]`, events.QuarantineNotJSON},
		{"string", `"x"`, events.QuarantineNotJSON},
		{"null", `null`, events.QuarantineMissingField},
		{"empty object", `{}`, events.QuarantineMissingField},
		{"no workspace", `{"event_id":"e1","event_type":"acs_credential.issued"}`, events.QuarantineMissingField},
		{"no event type", `{"event_id":"e1","workspace_id":"w"}`, events.QuarantineMissingField},
		{"no event id", `{"event_type":"t","workspace_id":"w"}`, events.QuarantineMissingField},
		{"number event id", `{"event_id":7,"event_type":"t","workspace_id":"w"}`, events.QuarantineInvalidField},
		{"object workspace", `{"event_id":"e","event_type":"t","workspace_id":{}}`, events.QuarantineInvalidField},
		{"event id with newline", `{"event_id":"e\r\nX: y","event_type":"t","workspace_id":"w"}`, events.QuarantineInvalidField},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			_, err := events.ParseEnvelope([]byte(c.Body))
			var envErr *events.EnvelopeError
			require.ErrorAs(t, err, &envErr)
			require.Equal(t, c.Reason, envErr.Reason)
		})
	}
}

// FuzzParseEnvelope: ParseEnvelope never panics, fails only with an
// *EnvelopeError, and a parsed envelope has its three ids; Subject returns a
// subject only if every token is valid.
func FuzzParseEnvelope(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden seeds: %v", err)
	}
	for _, name := range files {
		f.Add(golden(f, filepath.Base(name)))
	}
	f.Add([]byte(`{"event_id":"e","event_type":"a.*","workspace_id":">"}`))
	f.Add([]byte(`{"event_id":"e","event_type":"a..b","workspace_id":"w w"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := events.ParseEnvelope(body)
		if err != nil {
			var envErr *events.EnvelopeError
			if !errors.As(err, &envErr) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if env.EventID == "" || env.EventType == "" || env.WorkspaceID == "" {
			t.Fatalf("parsed envelope lacks an id: %+v", env)
		}
		subj, err := env.Subject()
		if err != nil {
			return
		}
		// Checked independently of streams.ValidToken, which built it.
		toks := strings.Split(subj, ".")
		if len(toks) < 4 || toks[0]+"."+toks[1] != streams.EventsSubjectPrefix || toks[2] != env.WorkspaceID ||
			strings.Join(toks[3:], ".") != env.EventType {
			t.Fatalf("subject %q does not spell seam.events.<workspace>.<type> for %+v", subj, env)
		}
		for _, tok := range toks {
			if tok == "" || strings.ContainsAny(tok, "*> \t\r\n\x00") || !utf8.ValidString(tok) {
				t.Fatalf("subject %q has invalid token %q", subj, tok)
			}
		}
	})
}
