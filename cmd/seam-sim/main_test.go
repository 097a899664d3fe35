package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/logtest"
	"github.com/cardwire/cardwire/internal/seam"
)

func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 24)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// start runs seam-sim in-process and returns its base URL.
func start(t *testing.T, env map[string]string) (string, *logtest.Sink, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := logtest.NewSink()
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			done <- err // for a second stop
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	addr := logs.Wait(t, "listening", "api")["addr"].(string)
	return "http://" + addr, logs, stop
}

func TestEncodeSucceedsAndSendsWebhook(t *testing.T) {
	secret := newSecret(t)
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	webhooks := make(chan []byte, 4)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := wh.Verify(body, r.Header); err != nil {
			t.Errorf("webhook does not verify: %v", err)
		}
		webhooks <- body
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)

	// The secret comes from a file, as in make run.
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(secret+"\n"), 0o600))
	base, _, stop := start(t, map[string]string{
		"SEAM_SIM_ADDR":            "127.0.0.1:0",
		"SEAM_SIM_WEBHOOK_URL":     rc.URL + "/webhooks/seam",
		"SEAM_WEBHOOK_SECRET_FILE": secretFile,
		"SEAM_SIM_ENCODE_DELAY":    "20ms",
		"LOG_LEVEL":                "debug",
	})

	o := seam.DefaultOptions()
	o.BaseURL, o.APIKey, o.Registerer = base, "seam_test_dev", prometheus.NewRegistry()
	client, err := seam.New(o)
	require.NoError(t, err)
	ctx := t.Context()
	at, err := client.EncodeCredential(ctx, seam.EncodeRequest{AcsEncoderID: "encoder-1", AcsCredentialID: "card-1"})
	require.NoError(t, err)
	require.Equal(t, seam.AttemptPending, at.Status)

	select {
	case body := <-webhooks:
		require.Contains(t, string(body), `"event_type":"acs_credential.issued"`)
		require.Contains(t, string(body), `"workspace_id":"00000000-0000-4000-8000-000000000001"`)
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook arrived")
	}
	at, err = client.GetActionAttempt(ctx, at.ActionAttemptID)
	require.NoError(t, err)
	require.Equal(t, seam.AttemptSuccess, at.Status)
	cred, err := at.Credential()
	require.NoError(t, err)
	require.Equal(t, "card-1", cred.AcsCredentialID)
	require.NotNil(t, cred.CardNumber)

	require.NoError(t, stop(), "a cancelled context is a clean exit")
}

func TestWorkspacesFile(t *testing.T) {
	const (
		aurora   = "00000000-0000-4000-8000-0000000000a1"
		borealis = "00000000-0000-4000-8000-0000000000b2"
		keyA     = "seam_test_aurora"
		pat      = "seam_at_dev_token"
	)
	secrets := map[string]string{aurora: newSecret(t), borealis: newSecret(t)}
	// One endpoint for both workspaces, as the receiver: each webhook must
	// verify with the secret of the workspace it names, and only with it.
	type hook struct{ workspace, credential string }
	webhooks := make(chan hook, 4)
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			WorkspaceID     string `json:"workspace_id"`
			AcsCredentialID string `json:"acs_credential_id"`
		}
		if err := json.Unmarshal(body, &ev); err != nil {
			t.Errorf("webhook body: %v", err)
		}
		for ws, secret := range secrets {
			wh, _ := svix.NewWebhook(secret)
			if err := wh.Verify(body, r.Header); (err == nil) != (ws == ev.WorkspaceID) {
				t.Errorf("webhook of %s checked with the secret of %s: %v", ev.WorkspaceID, ws, err)
			}
		}
		webhooks <- hook{ev.WorkspaceID, ev.AcsCredentialID}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)

	// YAML, with Borealis's secret and the token in files beside it, as a
	// Kubernetes Secret would hold them.
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "borealis-secret"), []byte(secrets[borealis]+"\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "pat"), []byte(pat+"\n"), 0o600))
	file := filepath.Join(dir, "workspaces.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`workspaces:
  - workspace_id: `+aurora+`
    name: Hotel Aurora
    webhook_secrets: ["`+secrets[aurora]+`"]
    seam_api_key: `+keyA+`
  - workspace_id: `+borealis+`
    name: Hotel Borealis
    webhook_secrets_file: borealis-secret
seam_personal_access_token_file: pat
`), 0o600))
	base, logs, stop := start(t, map[string]string{
		"SEAM_SIM_ADDR":         "127.0.0.1:0",
		"SEAM_SIM_WEBHOOK_URL":  rc.URL + "/webhooks/seam",
		"WORKSPACES_FILE":       file,
		"SEAM_SIM_ENCODE_DELAY": "20ms",
		"LOG_LEVEL":             "debug",
	})
	out := logs.String()
	require.Contains(t, out, `"workspace":"Hotel Aurora","reached_by":"its API key and the personal access token"`)
	require.Contains(t, out, `"workspace":"Hotel Borealis","reached_by":"the personal access token"`)

	client := func(key, workspace string) *seam.Client {
		o := seam.DefaultOptions()
		o.BaseURL, o.APIKey, o.WorkspaceID, o.Registerer = base, key, workspace, prometheus.NewRegistry()
		o.MaxRetries = 0
		c, err := seam.New(o)
		require.NoError(t, err)
		return c
	}
	testCases := []struct {
		Name          string
		Key           string
		Workspace     string
		WantWorkspace string // "" = refused
	}{
		{"Aurora's API key", keyA, "", aurora},
		{"the PAT naming Borealis", pat, borealis, borealis},
		{"the PAT naming Aurora", pat, aurora, aurora},
		{"the PAT naming no workspace", pat, "", ""},
		{"the PAT naming an unknown workspace", pat, "ws_unknown", ""},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			card := "card-" + c.Name
			at, err := client(c.Key, c.Workspace).EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: "encoder-1", AcsCredentialID: card})
			if c.WantWorkspace == "" {
				var apiErr *seam.APIError
				require.ErrorAs(t, err, &apiErr)
				require.Equal(t, http.StatusUnauthorized, apiErr.Status)
				require.Equal(t, "unauthorized", apiErr.Type)
				return
			}
			require.NoError(t, err)
			require.Equal(t, seam.AttemptPending, at.Status)
			select {
			case h := <-webhooks:
				require.Equal(t, hook{c.WantWorkspace, card}, h)
			case <-time.After(10 * time.Second):
				t.Fatal("no webhook arrived")
			}
		})
	}
	require.NoError(t, stop())
	for _, secret := range []string{keyA, pat, secrets[aurora], secrets[borealis]} {
		require.NotContains(t, logs.String(), secret, "no secret in any log line")
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.json")
	require.NoError(t, os.WriteFile(empty, []byte(`{"workspaces": []}`), 0o600))
	trackOnly := filepath.Join(dir, "track-only.json")
	require.NoError(t, os.WriteFile(trackOnly, []byte(`{"workspaces": [{"workspace_id": "ws1", "webhook_secrets": ["whsec_c2VjcmV0"]}]}`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad-secret.json"), []byte(`{"workspaces": [{"workspace_id": "ws1", "webhook_secrets": ["whsec_!!"], "seam_api_key": "seam_test_x"}]}`), 0o600))
	testCases := []struct {
		Name    string
		Env     map[string]string
		WantErr string
	}{
		{"no secret", map[string]string{}, "SEAM_WEBHOOK_SECRET or SEAM_WEBHOOK_SECRET_FILE must be set"},
		{"bad delay", map[string]string{"SEAM_WEBHOOK_SECRET": "whsec_c2VjcmV0", "SEAM_SIM_ENCODE_DELAY": "soon"}, "SEAM_SIM_ENCODE_DELAY"},
		{"bad secret", map[string]string{"SEAM_WEBHOOK_SECRET": "whsec_!!"}, "SEAM_WEBHOOK_SECRET"},
		{"bad url", map[string]string{"SEAM_WEBHOOK_SECRET": "whsec_c2VjcmV0", "SEAM_SIM_WEBHOOK_URL": "localhost:8080"}, "SEAM_SIM_WEBHOOK_URL"},
		{"arguments", map[string]string{"SEAM_WEBHOOK_SECRET": "whsec_c2VjcmV0", "args": "x"}, "unexpected arguments"},
		{"file and single-workspace variables", map[string]string{"WORKSPACES_FILE": empty, "SEAM_SIM_API_KEY": "seam_test_x", "SEAM_WEBHOOK_SECRET_FILE": "secret"},
			"WORKSPACES_FILE cannot be combined with SEAM_SIM_API_KEY, SEAM_WEBHOOK_SECRET_FILE"},
		{"file and a secret", map[string]string{"WORKSPACES_FILE": empty, "SEAM_WEBHOOK_SECRET": "whsec_c2VjcmV0"}, "WORKSPACES_FILE cannot be combined with SEAM_WEBHOOK_SECRET:"},
		{"missing file", map[string]string{"WORKSPACES_FILE": filepath.Join(dir, "nope.json")}, "WORKSPACES_FILE: open"},
		{"invalid file", map[string]string{"WORKSPACES_FILE": empty}, "at least one workspace is required"},
		{"no credentials in the file", map[string]string{"WORKSPACES_FILE": trackOnly}, "no workspace has Seam credentials"},
		{"bad secret in the file", map[string]string{"WORKSPACES_FILE": strings.Replace(trackOnly, "track-only", "bad-secret", 1)}, "WebhookSecret must be whsec_"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var args []string
			if a, ok := c.Env["args"]; ok {
				args = []string{a}
			}
			c.Env["SEAM_SIM_ADDR"] = "127.0.0.1:0"
			err := run(t.Context(), args, func(k string) string { return c.Env[k] }, io.Discard)
			require.ErrorContains(t, err, c.WantErr)
		})
	}
}
