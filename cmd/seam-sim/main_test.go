package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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

func TestConfigErrors(t *testing.T) {
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
