package events_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/events"
)

// eventFor is a Seam event body naming workspace ws ("" names none).
func eventFor(t testing.TB, ws string) []byte {
	t.Helper()
	ev := map[string]any{"event_id": uuid.NewString(), "event_type": "acs_credential.issued",
		"acs_credential_id": uuid.NewString(), "occurred_at": time.Now().UTC().Format(time.RFC3339Nano),
		"created_at": time.Now().UTC().Format(time.RFC3339Nano)}
	if ws != "" {
		ev["workspace_id"] = ws
	}
	b, err := json.Marshal(ev)
	require.NoError(t, err)
	return b
}

// With WORKSPACES_FILE a secret verifies only the events of its own
// workspace: a leaked secret of one property forges nothing of another.
func TestReceiverVerifiesWithTheNamedWorkspacesSecrets(t *testing.T) {
	const wsA, wsB, wsC = "ws-aurora", "ws-borealis", "ws-cassiopeia"
	secA, secB1, secB2, secC := newSecret(t), newSecret(t), newSecret(t), newSecret(t)
	keys := map[string]events.WorkspaceSecrets{
		wsA: {Label: "Hotel Aurora", Secrets: []string{secA}},
		wsB: {Label: wsB, Secrets: []string{secB1, secB2}},
	}
	verifier, err := events.NewWorkspaceVerifier(keys, 5*time.Minute)
	require.NoError(t, err)
	h := newHarness(t, func(o *events.Options) { o.Verifier = verifier })

	cases := []struct {
		name, secret, workspace string
		status                  int
		reason                  string
	}{
		{"own secret", secA, wsA, http.StatusNoContent, ""},
		{"second secret of a rotation", secB2, wsB, http.StatusNoContent, ""},
		{"A's secret naming B", secA, wsB, http.StatusUnauthorized, events.ReasonNoMatchingSecret},
		{"B's secret naming A", secB1, wsA, http.StatusUnauthorized, events.ReasonNoMatchingSecret},
		{"a workspace not configured", secC, wsC, http.StatusUnauthorized, events.ReasonUnknownWorkspace},
		{"a body naming no workspace", secA, "", http.StatusUnauthorized, events.ReasonUnknownWorkspace},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.msgCount(t)
			body := eventFor(t, tc.workspace)
			a := h.post(t, signed(t, tc.secret, "msg_"+uuid.NewString(), time.Now(), body), body)
			require.Equal(t, tc.status, a.Status, a.ErrMessage)
			if tc.status != http.StatusNoContent {
				require.Equal(t, "invalid_signature", a.ErrType)
				require.Contains(t, a.ErrMessage, tc.reason)
				require.Equal(t, before, h.msgCount(t), "nothing published")
			} else {
				require.Equal(t, before+1, h.msgCount(t))
			}
		})
	}
	require.Equal(t, 1.0, metric(t, h.reg, "cardwire_receiver_workspace_events_total", "workspace", "Hotel Aurora"))
	require.Equal(t, 1.0, metric(t, h.reg, "cardwire_receiver_workspace_events_total", "workspace", wsB))
	require.Equal(t, 2.0, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", "invalid_signature", "reason", events.ReasonNoMatchingSecret))
	require.Equal(t, 2.0, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", "invalid_signature", "reason", events.ReasonUnknownWorkspace))
	require.Contains(t, h.logs.String(), `"claimed_workspace_id":"`+wsC+`"`)
	for _, s := range []string{secA, secB1, secB2, secC} {
		require.NotContains(t, h.logs.String(), s)
	}

	// A reload: C added, B's rotation finished (its first secret gone).
	keys[wsC] = events.WorkspaceSecrets{Label: wsC, Secrets: []string{secC}}
	keys[wsB] = events.WorkspaceSecrets{Label: wsB, Secrets: []string{secB2}}
	require.NoError(t, verifier.SetWorkspaces(keys))
	for _, tc := range []struct {
		secret, workspace string
		status            int
	}{{secC, wsC, http.StatusNoContent}, {secB1, wsB, http.StatusUnauthorized}, {secB2, wsB, http.StatusNoContent}} {
		body := eventFor(t, tc.workspace)
		require.Equal(t, tc.status, h.post(t, signed(t, tc.secret, "msg_"+uuid.NewString(), time.Now(), body), body).Status)
	}
	// A broken set changes nothing.
	require.Error(t, verifier.SetWorkspaces(map[string]events.WorkspaceSecrets{wsA: {Label: wsA, Secrets: []string{"whsec_!!"}}}))
	body := eventFor(t, wsC)
	require.Equal(t, http.StatusNoContent, h.post(t, signed(t, secC, "msg_"+uuid.NewString(), time.Now(), body), body).Status)
}

// A verified body of a configured workspace that is not a usable event
// is still quarantined (verified with its workspace's secret).
func TestReceiverQuarantinesAWorkspacesBrokenEvent(t *testing.T) {
	sec := newSecret(t)
	verifier, err := events.NewWorkspaceVerifier(map[string]events.WorkspaceSecrets{"ws1": {Label: "ws1", Secrets: []string{sec}}}, 5*time.Minute)
	require.NoError(t, err)
	h := newHarness(t, func(o *events.Options) { o.Verifier = verifier })
	body := []byte(`{"workspace_id":"ws1","event_type":"acs_credential.issued"}`) // no event_id
	require.Equal(t, http.StatusNoContent, h.post(t, signed(t, sec, "msg_q1", time.Now(), body), body).Status)
	require.Equal(t, 1.0, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", "quarantined"))
}

func TestNewWorkspaceVerifierRefuses(t *testing.T) {
	for name, keys := range map[string]map[string]events.WorkspaceSecrets{
		"no workspace":      {},
		"no secret":         {"ws1": {Label: "ws1"}},
		"not base64 secret": {"ws1": {Label: "ws1", Secrets: []string{"whsec_!!"}}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := events.NewWorkspaceVerifier(keys, time.Minute)
			require.Error(t, err)
		})
	}
}
