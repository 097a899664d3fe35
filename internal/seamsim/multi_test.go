package seamsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
)

const (
	wsAurora   = "00000000-0000-4000-8000-0000000000a1"
	wsBorealis = "00000000-0000-4000-8000-0000000000b2"
	keyAurora  = "seam_test_aurora"
	pat        = "seam_at_dev_token"
)

// multiEnv is a Multi of two workspaces behind an httptest server: Aurora
// with its own API key, Borealis reached through the personal access token
// only. Both send webhooks to one endpoint, as to cardwire's receiver.
type multiEnv struct {
	m   *seamsim.Multi
	api *httptest.Server
	got chan delivery
}

func newMulti(t *testing.T, configure func(*seamsim.MultiOptions)) *multiEnv {
	t.Helper()
	secrets := map[string]string{wsAurora: newSecret(t), wsBorealis: newSecret(t)}
	e := &multiEnv{got: make(chan delivery, 16)}
	// Like cardwire's receiver, the endpoint verifies with the secret of
	// the workspace the body names; no other workspace's secret may verify.
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev map[string]any
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body is not JSON: %v", err)
		}
		for ws, secret := range secrets {
			wh, err := svix.NewWebhook(secret)
			if err != nil {
				t.Errorf("secret: %v", err)
				continue
			}
			err = wh.Verify(body, r.Header)
			switch {
			case ws == ev["workspace_id"] && err != nil:
				t.Errorf("webhook of %s does not verify with its secret: %v", ws, err)
			case ws != ev["workspace_id"] && err == nil:
				t.Errorf("webhook of %v verifies with the secret of %s", ev["workspace_id"], ws)
			}
		}
		e.got <- delivery{id: r.Header.Get("svix-id"), body: body, event: ev, at: time.Now()}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hooks.Close)
	o := seamsim.MultiOptions{
		Workspaces: []seamsim.WorkspaceOptions{
			{WorkspaceID: wsAurora, Name: "Hotel Aurora", APIKey: keyAurora, WebhookSecret: secrets[wsAurora]},
			{WorkspaceID: wsBorealis, Name: "Hotel Borealis", WebhookSecret: secrets[wsBorealis]},
		},
		PersonalAccessToken: pat,
		WebhookURL:          hooks.URL + "/webhooks/seam",
		EncodeDelay:         20 * time.Millisecond,
		RetryDelays:         []time.Duration{},
		Log:                 zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if configure != nil {
		configure(&o)
	}
	m, err := seamsim.NewMulti(o)
	require.NoError(t, err)
	e.m = m
	e.api = httptest.NewServer(m.Handler())
	t.Cleanup(e.api.Close)
	t.Cleanup(m.Close)
	return e
}

// call makes one API call with auth as Authorization and workspace as
// seam-workspace (each left out when empty).
func (e *multiEnv) call(t *testing.T, auth, workspace, path string, body any) answer {
	t.Helper()
	h := http.Header{}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	if workspace != "" {
		h.Set("seam-workspace", workspace)
	}
	a, err := post(e.api.URL, h, path, body)
	require.NoError(t, err)
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	require.NotEmpty(t, a.header.Get("seam-request-id"))
	return a
}

func (e *multiEnv) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-e.got:
		return d
	case <-time.After(wait):
		t.Fatal("no webhook arrived")
		return delivery{}
	}
}

func TestMultiRoutesByCredentials(t *testing.T) {
	e := newMulti(t, nil)
	testCases := []struct {
		Name          string
		Auth          string
		Workspace     string
		WantStatus    int
		WantWorkspace string
	}{
		{"API key reaches its workspace", "Bearer " + keyAurora, "", http.StatusOK, wsAurora},
		{"API key ignores seam-workspace", "Bearer " + keyAurora, wsBorealis, http.StatusOK, wsAurora},
		{"PAT reaches Aurora", "Bearer " + pat, wsAurora, http.StatusOK, wsAurora},
		{"PAT reaches Borealis", "Bearer " + pat, wsBorealis, http.StatusOK, wsBorealis},
		{"PAT without seam-workspace", "Bearer " + pat, "", http.StatusUnauthorized, ""},
		{"PAT with an unknown workspace", "Bearer " + pat, "ws_unknown", http.StatusUnauthorized, ""},
		{"unknown key", "Bearer seam_test_other", wsAurora, http.StatusUnauthorized, ""},
		{"no Authorization", "", wsAurora, http.StatusUnauthorized, ""},
		{"no scheme", pat, wsAurora, http.StatusUnauthorized, ""},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			// Lenient: the encoder is created in the workspace that answers.
			a := e.call(t, c.Auth, c.Workspace, seamsim.PathListEncoders, map[string]any{"acs_encoder_ids": []string{encoderID}})
			require.Equal(t, c.WantStatus, a.status, "%s", a.raw)
			if c.WantStatus != http.StatusOK {
				require.Equal(t, "unauthorized", a.errType(t))
				require.JSONEq(t, "false", string(a.body["ok"]))
				return
			}
			var encoders []struct {
				WorkspaceID string `json:"workspace_id"`
			}
			require.NoError(t, json.Unmarshal(a.body["acs_encoders"], &encoders))
			require.Len(t, encoders, 1)
			require.Equal(t, c.WantWorkspace, encoders[0].WorkspaceID)
		})
	}

	aurora, borealis := e.m.Workspace(wsAurora), e.m.Workspace(wsBorealis)
	require.Equal(t, []string{wsAurora, wsBorealis}, e.m.IDs())
	require.Nil(t, e.m.Workspace("ws_unknown"))
	require.Equal(t, 2, aurora.CallsWith(seamsim.PathListEncoders, seamsim.AuthAPIKey))
	require.Equal(t, 1, aurora.CallsWith(seamsim.PathListEncoders, seamsim.AuthPAT))
	require.Equal(t, 3, aurora.Calls(seamsim.PathListEncoders))
	require.Zero(t, borealis.CallsWith(seamsim.PathListEncoders, seamsim.AuthAPIKey))
	require.Equal(t, 1, borealis.CallsWith(seamsim.PathListEncoders, seamsim.AuthPAT))
	require.Equal(t, 1, borealis.Calls(seamsim.PathListEncoders))
	require.Equal(t, 5, e.m.Unauthorized())
}

func TestMultiWorkspacesAreSeparate(t *testing.T) {
	e := newMulti(t, func(o *seamsim.MultiOptions) { o.Strict = true })
	aurora, borealis := e.m.Workspace(wsAurora), e.m.Workspace(wsBorealis)
	aurora.AddEncoder(encoderID)
	aurora.AddCredential(credID)
	a := e.call(t, "Bearer "+keyAurora, "", seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": encoderID, "acs_credential_id": credID})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var at seam.ActionAttempt
	require.NoError(t, json.Unmarshal(a.body["action_attempt"], &at))
	get := map[string]string{"action_attempt_id": at.ActionAttemptID}

	testCases := []struct {
		Name       string
		Workspace  string
		Path       string
		Body       any
		WantStatus int
		WantType   string
	}{
		{"the attempt is in Aurora", wsAurora, seamsim.PathGetActionAttempt, get, http.StatusOK, ""},
		{"not in Borealis", wsBorealis, seamsim.PathGetActionAttempt, get, http.StatusNotFound, "action_attempt_not_found"},
		{"nor its credential", wsBorealis, seamsim.PathGetCredential, map[string]string{"acs_credential_id": credID}, http.StatusNotFound, "acs_credential_not_found"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			a := e.call(t, "Bearer "+pat, c.Workspace, c.Path, c.Body)
			require.Equal(t, c.WantStatus, a.status, "%s", a.raw)
			require.Equal(t, c.WantType, a.errType(t))
		})
	}
	require.Equal(t, wsAurora, e.next(t).event["workspace_id"])

	// Knobs are per workspace: an outage of Borealis leaves Aurora up.
	borealis.SetDown(true)
	require.Equal(t, http.StatusOK, e.call(t, "Bearer "+keyAurora, "", seamsim.PathGetActionAttempt, get).status)
	a = e.call(t, "Bearer "+pat, wsBorealis, seamsim.PathGetActionAttempt, get)
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.Equal(t, "service_unavailable", a.errType(t))
}

func TestMultiWebhooksSignedPerWorkspace(t *testing.T) {
	e := newMulti(t, nil)
	encodes := []struct {
		auth, workspace, credential string
	}{
		{"Bearer " + keyAurora, "", "card-aurora"},
		{"Bearer " + pat, wsBorealis, "card-borealis"},
	}
	attempts := map[string]string{} // credential → attempt id
	for _, c := range encodes {
		a := e.call(t, c.auth, c.workspace, seamsim.PathEncodeCredential, map[string]string{"acs_encoder_id": encoderID, "acs_credential_id": c.credential})
		require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
		var at seam.ActionAttempt
		require.NoError(t, json.Unmarshal(a.body["action_attempt"], &at))
		attempts[c.credential] = at.ActionAttemptID
	}

	// The endpoint checked each signature against each workspace's secret.
	got := map[string]any{}
	for range encodes {
		d := e.next(t)
		require.Equal(t, "acs_credential.issued", d.event["event_type"])
		got[d.event["workspace_id"].(string)] = d.event["acs_credential_id"]
	}
	require.Equal(t, map[string]any{wsAurora: "card-aurora", wsBorealis: "card-borealis"}, got)

	a := e.call(t, "Bearer "+pat, wsBorealis, seamsim.PathGetActionAttempt, map[string]string{"action_attempt_id": attempts["card-borealis"]})
	require.Equal(t, http.StatusOK, a.status, "%s", a.raw)
	var at seam.ActionAttempt
	require.NoError(t, json.Unmarshal(a.body["action_attempt"], &at))
	cred, err := at.Credential()
	require.NoError(t, err)
	require.Equal(t, wsBorealis, cred.WorkspaceID)
	for _, id := range e.m.IDs() {
		require.Eventually(t, func() bool { return e.m.Workspace(id).Delivered() == 1 }, wait, tick, id)
	}
}

func TestMultiValidate(t *testing.T) {
	secret := newSecret(t)
	ws := func(id, key, secret string) seamsim.WorkspaceOptions {
		return seamsim.WorkspaceOptions{WorkspaceID: id, APIKey: key, WebhookSecret: secret}
	}
	testCases := []struct {
		Name    string
		Options seamsim.MultiOptions
		WantErr string
	}{
		{"keys only", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", ""), ws("b", "kb", "")}}, ""},
		{"PAT only", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "", "")}, PersonalAccessToken: "p"}, ""},
		{"with webhooks", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", secret)}, WebhookURL: "http://127.0.0.1:8080/webhooks/seam"}, ""},
		{"no workspaces", seamsim.MultiOptions{PersonalAccessToken: "p"}, "MultiOptions.Workspaces must have at least one"},
		{"no id", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("", "ka", "")}}, "Workspaces[0]: WorkspaceID must be set"},
		{"twice", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", ""), ws("a", "kb", "")}}, "Workspaces[1] (a): WorkspaceID is configured twice"},
		{"unreachable", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", ""), ws("b", "", "")}}, "Workspaces[1] (b): set its APIKey or MultiOptions.PersonalAccessToken"},
		{"shared key", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "k", ""), ws("b", "k", "")}}, "key of workspace a"},
		{"key is the PAT", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "p", "")}, PersonalAccessToken: "p"}, "APIKey must differ"},
		{"url without secret", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", secret), ws("b", "kb", "")}, WebhookURL: "http://x/"}, "Workspaces[1] (b): WebhookSecret must be set"},
		{"bad secret", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", "whsec_!!")}, WebhookURL: "http://x/"}, "Workspaces[0] (a): WebhookSecret must be whsec_"},
		{"relative url", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", secret)}, WebhookURL: "/webhooks"}, "MultiOptions.WebhookURL"},
		{"negative delay", seamsim.MultiOptions{Workspaces: []seamsim.WorkspaceOptions{ws("a", "ka", "")}, EncodeDelay: -time.Second}, "MultiOptions.EncodeDelay"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := c.Options.Validate()
			if c.WantErr == "" {
				require.NoError(t, err)
				m, err := seamsim.NewMulti(c.Options)
				require.NoError(t, err)
				m.Close()
				return
			}
			require.ErrorContains(t, err, c.WantErr)
			_, err = seamsim.NewMulti(c.Options)
			require.Error(t, err)
		})
	}
}
