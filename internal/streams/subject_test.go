package streams_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/streams"
)

func TestEventSubject(t *testing.T) {
	const ws = "6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11"
	testCases := []struct {
		Name      string
		Workspace string
		EventType string
		Want      string
	}{
		{Name: "issued keeps its dot", Workspace: ws, EventType: "acs_credential.issued", Want: "seam.events." + ws + ".acs_credential.issued"},
		{Name: "three part type", Workspace: ws, EventType: "access_code.unmanaged.created", Want: "seam.events." + ws + ".access_code.unmanaged.created"},
		{Name: "empty workspace", Workspace: "", EventType: "acs_credential.issued"},
		{Name: "dotted workspace", Workspace: "a.b", EventType: "acs_credential.issued"},
		{Name: "star workspace", Workspace: "*", EventType: "acs_credential.issued"},
		{Name: "gt workspace", Workspace: ">", EventType: "acs_credential.issued"},
		{Name: "space in workspace", Workspace: "ws 1", EventType: "acs_credential.issued"},
		{Name: "empty type", Workspace: ws, EventType: ""},
		{Name: "empty token in type", Workspace: ws, EventType: "acs_credential..issued"},
		{Name: "leading dot", Workspace: ws, EventType: ".issued"},
		{Name: "trailing dot", Workspace: ws, EventType: "issued."},
		{Name: "wildcard type", Workspace: ws, EventType: "acs_credential.*"},
		{Name: "full wildcard type", Workspace: ws, EventType: ">"},
		{Name: "tab in type", Workspace: ws, EventType: "acs\tcredential"},
		{Name: "newline in type", Workspace: ws, EventType: "a\r\nb"},
		{Name: "non ascii", Workspace: ws, EventType: "acs_credential.issuéd"},
		{Name: "too long token", Workspace: strings.Repeat("a", 129), EventType: "x"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := streams.EventSubject(c.Workspace, c.EventType)
			if c.Want == "" {
				require.ErrorIs(t, err, streams.ErrInvalidToken)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.Want, got)
		})
	}
}

// FuzzEventSubject: a subject is returned only if every token is valid, and
// it never contains a wildcard, whitespace or an empty token.
func FuzzEventSubject(f *testing.F) {
	f.Add("6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11", "acs_credential.issued")
	f.Add("ws", "a..b")
	f.Add("*", ">")
	f.Fuzz(func(t *testing.T, workspace, eventType string) {
		subj, err := streams.EventSubject(workspace, eventType)
		if err != nil {
			if !errors.Is(err, streams.ErrInvalidToken) || subj != "" {
				t.Fatalf("error %v with subject %q", err, subj)
			}
			return
		}
		if !strings.HasPrefix(subj, streams.EventsSubjectPrefix+".") {
			t.Fatalf("subject %q lacks the prefix", subj)
		}
		toks := strings.Split(subj, ".")
		if toks[2] != workspace {
			t.Fatalf("workspace token %q, want %q", toks[2], workspace)
		}
		for _, tok := range toks {
			if !streams.ValidToken(tok) || strings.ContainsAny(tok, "*> \t\r\n") {
				t.Fatalf("subject %q has invalid token %q", subj, tok)
			}
		}
	})
}
