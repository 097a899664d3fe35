package main

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

type encodingList struct {
	Encodings  []encoding.Record `json:"encodings"`
	NextCursor string            `json:"next_cursor"`
}

func encodingIDs(l encodingList) []string {
	var out []string
	for _, r := range l.Encodings {
		out = append(out, r.EncodingID)
	}
	return out
}

// get, list (pending, paged, a workspace's recent ones) and cancel
// against a real worker's API.
func TestEncodings(t *testing.T) {
	s := newStack(t, true)
	first := s.register(t, uuid.NewString(), uuid.NewString())
	second := s.register(t, uuid.NewString(), uuid.NewString())

	var pending encodingList
	cliJSON(t, s.env, &pending, "encodings", "list")
	require.ElementsMatch(t, []string{first, second}, encodingIDs(pending))
	for _, r := range pending.Encodings {
		require.Equal(t, encoding.StatusPending, r.Status)
	}
	var page encodingList
	cliJSON(t, s.env, &page, "encodings", "list", "--status", "pending", "--workspace", ws, "--limit", "1")
	require.Len(t, page.Encodings, 1)
	require.NotEmpty(t, page.NextCursor, "the rest is one --cursor away")
	var rest encodingList
	cliJSON(t, s.env, &rest, "encodings", "list", "--limit", "1", "--cursor", page.NextCursor)
	require.ElementsMatch(t, []string{first, second}, append(encodingIDs(page), encodingIDs(rest)...))

	text := cliOK(t, s.env, "encodings", "list")
	require.Regexp(t, `ENCODING_ID\s+WORKSPACE_ID\s+STATUS\s+CREDENTIAL`, text)
	require.Contains(t, text, first)
	require.Regexp(t, `(?m)^status\s+pending$`, cliOK(t, s.env, "encodings", "get", first))

	var canceled encoding.Record
	cliJSON(t, s.env, &canceled, "encodings", "cancel", first)
	require.Equal(t, encoding.StatusCanceled, canceled.Status)
	require.Equal(t, encoding.ResolvedByCancel, canceled.ResolvedBy)
	cliJSON(t, s.env, &canceled, "encodings", "cancel", first)
	require.Equal(t, encoding.StatusCanceled, canceled.Status, "a repeat answers the canceled record")

	cliJSON(t, s.env, &pending, "encodings", "list")
	require.Equal(t, []string{second}, encodingIDs(pending))
	// A workspace's recent encodings come from the outcomes (the outbox
	// publishes each revision).
	require.Eventually(t, func() bool {
		var recent encodingList
		cliJSON(t, s.env, &recent, "encodings", "list", "--workspace", ws, "--since", "10m")
		return slices.Contains(encodingIDs(recent), first) && slices.Contains(encodingIDs(recent), second)
	}, 5*time.Second, 20*time.Millisecond)

	testCases := []struct {
		Name string
		Env  map[string]string
		Args []string
		Want string
	}{
		{"unknown id", s.env, []string{"encodings", "get", "enc-nope"}, "no encoding enc-nope (404)"},
		{"no token", with(s.env, "WORKER_API_TOKEN", ""), []string{"encodings", "list"}, "needs a token: set WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE)"},
		{"wrong token", with(s.env, "WORKER_API_TOKEN", "nope"), []string{"encodings", "list"}, "refused the token (401): set WORKER_API_TOKEN"},
		{"an API URL with its path", with(s.env, "WORKER_API_URL", s.api+"/v1/encodings/"), []string{"encodings", "get", "enc-nope"}, "no encoding enc-nope"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			_, err := runCLI(t, c.Env, c.Args...)
			require.ErrorContains(t, err, c.Want)
		})
	}
}
