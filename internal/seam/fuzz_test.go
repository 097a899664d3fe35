package seam_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/seam"
)

// FuzzActionAttemptCredential feeds action-attempt JSON (seeded with the
// golden answers in testdata) to ActionAttempt.Credential. Invariants:
// never panic, and yield a credential only for a successful attempt with a
// result that is a JSON object.
func FuzzActionAttemptCredential(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	require.NoError(f, err)
	require.NotEmpty(f, files)
	for _, name := range files {
		b, err := os.ReadFile(name)
		require.NoError(f, err)
		var env struct {
			ActionAttempt json.RawMessage `json:"action_attempt"`
		}
		require.NoError(f, json.Unmarshal(b, &env), name)
		if env.ActionAttempt != nil {
			f.Add([]byte(env.ActionAttempt))
		}
	}
	f.Add([]byte(`{"status":"success","result":null}`))
	f.Add([]byte(`{"status":"success","result":[]}`))
	f.Add([]byte(`{"status":"success","result":{"issued_at":"yesterday"}}`))
	f.Add([]byte(`{"status":"success","result":{"card_number":12345678}}`))
	f.Add([]byte(`{"status":"pending","result":{"acs_credential_id":"x"}}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		var a seam.ActionAttempt
		if json.Unmarshal(data, &a) == nil {
			if _, err := a.Credential(); err == nil {
				require.Equal(t, seam.AttemptSuccess, a.Status, "a credential from a %q attempt", a.Status)
				var obj map[string]json.RawMessage
				require.NoError(t, json.Unmarshal(a.Result, &obj), "a credential from a result that is not an object: %s", a.Result)
			}
		}
		// Any bytes as the raw result: only "no panic" holds here, since a
		// hand-built Result such as " null" is not trimmed the way the
		// decoder trims it.
		_, _ = seam.ActionAttempt{ActionAttemptID: "a", Status: seam.AttemptSuccess, Result: data}.Credential()
	})
}
