package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/logtest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
)

func TestRunRefusesUnsafeConfig(t *testing.T) {
	testCases := []struct {
		Name string
		Env  map[string]string
		Want string
	}{
		{"public API without token", map[string]string{"WORKER_API_ADDR": ":8081"}, "WORKER_API_TOKEN (or WORKER_API_TOKEN_FILE) must be set"},
		{"handle timeout beyond ack wait", map[string]string{"WORKER_API_ADDR": "127.0.0.1:0", "WORKER_HANDLE_TIMEOUT": "40s"}, "WORKER_HANDLE_TIMEOUT must be shorter than WORKER_ACK_WAIT"},
		{"bad replicas", map[string]string{"WORKER_API_ADDR": "127.0.0.1:0", "ENCODINGS_REPLICAS": "9"}, "Replicas must be between 1 and 5"},
		{"bad duration", map[string]string{"WORKER_API_ADDR": "127.0.0.1:0", "ENCODING_SKEW_MARGIN": "a bit"}, "ENCODING_SKEW_MARGIN: want a positive Go duration"},
		{"Seam over plain http", map[string]string{"WORKER_API_ADDR": "127.0.0.1:0", "SEAM_API_KEY": "seam_x", "SEAM_API_URL": "http://connect.getseam.com"}, "SEAM_API_URL: Options.BaseURL \"http://connect.getseam.com\" must be https://"},
		{"no Seam rate", map[string]string{"WORKER_API_ADDR": "127.0.0.1:0", "SEAM_MAX_RPS": "0"}, "SEAM_MAX_RPS"},
		// A PAT (seam_at…) reaches several workspaces: it must name one.
		{"PAT without its workspace", map[string]string{"WORKER_API_ADDR": "127.0.0.1:0", "SEAM_API_KEY": "seam_at_1234"}, "SEAM_WORKSPACE_ID must be set with a personal access token"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := run(t.Context(), nil, func(k string) string { return c.Env[k] }, &bytes.Buffer{})
			require.ErrorContains(t, err, c.Want)
		})
	}
}

func TestRunSettlesAndServesMetrics(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))

	logs := logtest.NewSink()
	env := map[string]string{
		"NATS_URL": srv.ClientURL(), "WORKER_API_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
		"WORKER_API_TOKEN": "tok", "SEAM_WORKSPACE_ID": "ws-1",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := logs.Wait(t, "listening", "admin")["addr"].(string)
	api := logs.Wait(t, "listening", "api")["addr"].(string)

	// Register (the workspace comes from SEAM_WORKSPACE_ID), then the event.
	cred := uuid.NewString()
	body := fmt.Sprintf(`{"acs_encoder_id":%q,"acs_credential_id":%q,"action_attempt_id":%q}`, uuid.NewString(), cred, uuid.NewString())
	req, _ := http.NewRequest(http.MethodPost, "http://"+api+"/v1/encodings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var rec struct {
		EncodingID  string `json:"encoding_id"`
		WorkspaceID string `json:"workspace_id"`
		Status      string `json:"status"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, "ws-1", rec.WorkspaceID)

	require.Eventually(t, func() bool { return scrape(admin).Value("cardwire_worker_encodings_pending") == 1 },
		10*time.Second, 10*time.Millisecond, "pending gauge from the KV watch")

	ev := fmt.Sprintf(`{"event_id":%q,"event_type":"acs_credential.issued","workspace_id":"ws-1","occurred_at":%q,"acs_credential_id":%q}`,
		uuid.NewString(), time.Now().UTC().Format(time.RFC3339Nano), cred)
	_, err = js.Publish(t.Context(), "seam.events.ws-1.acs_credential.issued", []byte(ev), jetstream.WithMsgID("msg_run"))
	require.NoError(t, err)

	req, _ = http.NewRequest(http.MethodGet, "http://"+api+"/v1/encodings/"+rec.EncodingID+"?wait=10s", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
	resp.Body.Close()
	require.Equal(t, "issued", rec.Status)

	require.Eventually(t, func() bool { return scrape(admin).Value("cardwire_worker_encodings_pending") == 0 },
		10*time.Second, 10*time.Millisecond)
	mfs, err := promtest.Scrape("http://" + admin + "/metrics")
	require.NoError(t, err)
	require.EqualValues(t, 1, mfs.Value("cardwire_worker_events_total", "event_type", "acs_credential.issued", "result", "matched"))
	require.EqualValues(t, 1, mfs.Value("cardwire_worker_encodings_resolved_total", "status", "issued", "resolved_by", "webhook"))
	require.EqualValues(t, 1, mfs.Value("cardwire_worker_resolve_duration_seconds"))
	require.EqualValues(t, 1, mfs.Value("cardwire_worker_event_lag_seconds"))
	require.EqualValues(t, 1, mfs.Value("cardwire_worker_handle_duration_seconds", "result", "matched"))
	require.EqualValues(t, 1, mfs.Value("cardwire_worker_api_requests_total", "route", "register", "code", "201"))
	require.EqualValues(t, 0, mfs.Value("cardwire_worker_consumer_pending"))
	require.EqualValues(t, 1, mfs.Value("cardwire_nats_connected"))

	resp, err = http.Get("http://" + admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	require.NoError(t, <-done)
	done <- nil
	logs.Wait(t, "stopped", "lifecycle")
}

// scrape is the admin page's metrics, or none while it cannot be read.
func scrape(addr string) promtest.Families {
	mfs, _ := promtest.Scrape("http://" + addr + "/metrics")
	return mfs
}

// writeWorkspaces replaces the WORKSPACES_FILE at path in one rename, as
// a Kubernetes Secret volume does, so that a reload never reads half a
// file.
func writeWorkspaces(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	require.NoError(t, os.Rename(tmp, path))
}

// apiResult is an API answer: its status, and the record or the error.
type apiResult struct {
	Status int
	Record struct {
		EncodingID  string `json:"encoding_id"`
		WorkspaceID string `json:"workspace_id"`
		Status      string `json:"status"`
	}
	ErrType string
}

func callAPI(t testing.TB, method, url, token, body string) apiResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	res := apiResult{Status: resp.StatusCode}
	if resp.StatusCode < 300 {
		require.NoError(t, json.Unmarshal(raw, &res.Record), "%s", raw)
		return res
	}
	var e struct {
		Error struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(raw, &e), "%s", raw)
	res.ErrType = e.Error.Type
	return res
}

// trackOnly is a registration of an encode the caller started itself, in
// workspace ws (none when empty).
func trackOnly(ws string) string {
	ids := fmt.Sprintf(`"acs_encoder_id":%q,"acs_credential_id":%q,"action_attempt_id":%q`, uuid.NewString(), uuid.NewString(), uuid.NewString())
	if ws == "" {
		return "{" + ids + "}"
	}
	return fmt.Sprintf(`{"workspace_id":%q,%s}`, ws, ids)
}

func TestRunWithWorkspacesFileScopesTokensAndReloads(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))

	t1, t2, t3 := "desk-a-token-"+uuid.NewString(), "operators-"+uuid.NewString(), "desk-b-token-"+uuid.NewString()
	path := filepath.Join(t.TempDir(), "workspaces.yaml")
	const workspacesPart = `workspaces:
  - workspace_id: ws-a
    name: Hotel A
    webhook_secrets: ["whsec_QUJDREVGR0hJSktMTU5PUA=="]
  - workspace_id: ws-b
    name: Hotel B
    webhook_secrets: ["whsec_UVJTVFVWV1hZWmFiY2RlZg=="]
`
	writeWorkspaces(t, path, workspacesPart+fmt.Sprintf(`api_tokens:
  - name: desk a
    token: %q
    workspaces: [ws-a]
  - name: operators
    token: %q
    workspaces: ["*"]
`, t1, t2))

	logs := logtest.NewSink()
	env := map[string]string{
		"NATS_URL": srv.ClientURL(), "WORKER_API_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
		"WORKSPACES_FILE": path, "WORKSPACES_RELOAD_INTERVAL": "100ms",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := logs.Wait(t, "listening", "admin")["addr"].(string)
	api := "http://" + logs.Wait(t, "listening", "api")["addr"].(string)
	started := logs.Wait(t, "worker started", "")
	require.Equal(t, true, started["api_auth"])
	require.EqualValues(t, 2, started["workspaces"])

	encodings := api + "/v1/encodings"
	register := func(t *testing.T, token, ws string, wantStatus int, wantType string) apiResult {
		t.Helper()
		res := callAPI(t, http.MethodPost, encodings, token, trackOnly(ws))
		require.Equal(t, wantStatus, res.Status, "error %s", res.ErrType)
		require.Equal(t, wantType, res.ErrType)
		if wantStatus == http.StatusCreated {
			require.Equal(t, ws, res.Record.WorkspaceID)
		}
		return res
	}

	testCases := []struct {
		Name       string
		Token      string
		Workspace  string
		WantStatus int
		WantType   string
	}{
		{"T1 in its workspace", t1, "ws-a", http.StatusCreated, ""},
		{"T1 in another workspace", t1, "ws-b", http.StatusForbidden, "forbidden_workspace"},
		{"T1 in an unconfigured workspace", t1, "ws-z", http.StatusBadRequest, "invalid_input"},
		{"T2 in B", t2, "ws-b", http.StatusCreated, ""},
		{"T2 without workspace_id", t2, "", http.StatusBadRequest, "invalid_input"},
		{"unknown token", "not-in-the-file-" + uuid.NewString(), "ws-a", http.StatusUnauthorized, "unauthorized"},
	}
	var inB string
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			res := register(t, c.Token, c.Workspace, c.WantStatus, c.WantType)
			if c.Token == t2 && c.WantStatus == http.StatusCreated {
				inB = res.Record.EncodingID
			}
		})
	}
	require.NotEmpty(t, inB)
	// T1 is shown no other workspace's encoding, not even that it exists.
	res := callAPI(t, http.MethodGet, encodings+"/"+inB, t1, "")
	require.Equal(t, http.StatusNotFound, res.Status)
	require.Equal(t, "encoding_not_found", res.ErrType)
	res = callAPI(t, http.MethodGet, encodings+"/"+inB, t2, "")
	require.Equal(t, http.StatusOK, res.Status)
	require.Equal(t, "pending", res.Record.Status)

	// T1 revoked, T3 added for B.
	writeWorkspaces(t, path, workspacesPart+fmt.Sprintf(`api_tokens:
  - name: operators
    token: %q
    workspaces: ["*"]
  - name: desk b
    token: %q
    workspaces: [ws-b]
`, t2, t3))
	line := logs.Wait(t, "WORKSPACES_FILE reloaded", "workspaces")
	require.ElementsMatch(t, []any{"API token added: desk b", "API token revoked: desk a"}, line["changes"])

	t.Run("reloaded", func(t *testing.T) {
		register(t, t1, "ws-a", http.StatusUnauthorized, "unauthorized")
		register(t, t3, "ws-b", http.StatusCreated, "")
		register(t, t3, "ws-a", http.StatusForbidden, "forbidden_workspace")
		// T3 reaches one workspace: it may leave workspace_id out.
		res := callAPI(t, http.MethodPost, encodings, t3, trackOnly(""))
		require.Equal(t, http.StatusCreated, res.Status, res.ErrType)
		require.Equal(t, "ws-b", res.Record.WorkspaceID)
		res = callAPI(t, http.MethodGet, encodings+"/"+inB, t3, "")
		require.Equal(t, http.StatusOK, res.Status)
	})

	// A token naming a workspace that is not configured: refused, the last
	// good configuration stays.
	writeWorkspaces(t, path, workspacesPart+fmt.Sprintf(`api_tokens:
  - name: desk a
    token: %q
    workspaces: [ws-a]
  - name: desk c
    token: %q
    workspaces: [ws-c]
`, t1, t3))
	bad := logs.Wait(t, "WORKSPACES_FILE not reloaded; the last good configuration stays in force", "workspaces")
	require.Contains(t, bad["error"], `api_tokens[1] (desk c): workspace "ws-c" is not configured`)

	t.Run("refused", func(t *testing.T) {
		register(t, t3, "ws-b", http.StatusCreated, "")
		register(t, t1, "ws-a", http.StatusUnauthorized, "unauthorized")
		register(t, t2, "ws-a", http.StatusCreated, "")
	})

	mfs, err := promtest.Scrape("http://" + admin + "/metrics")
	require.NoError(t, err)
	require.EqualValues(t, 1, mfs.Value("cardwire_config_reload_errors_total"))
	require.EqualValues(t, 1, mfs.Value("cardwire_config_reloads_total"))
	require.EqualValues(t, 0, mfs.Value("cardwire_config_last_reload_successful"))
	resp, err := http.Get("http://" + admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	for _, tok := range []string{t1, t2, t3} {
		require.NotContains(t, logs.String(), tok, "no token is logged")
	}
	cancel()
	require.NoError(t, <-done)
	done <- nil
}

func TestRunRefusesBadWorkspacesFile(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	const token = "a-long-enough-api-token-0001"
	const ws = "workspaces:\n  - workspace_id: ws-a\n    webhook_secrets: [\"whsec_QUJDREVGR0hJSktMTU5PUA==\"]\n"
	good := file("good.yaml", ws+"api_tokens:\n  - token: "+token+"\n    workspaces: [ws-a]\n")
	noTokens := file("notokens.yaml", ws)
	tokenFile := file("token", token+"\n")
	testCases := []struct {
		Name string
		Env  map[string]string
		Want []string
	}{
		{"with SEAM_API_KEY", map[string]string{"WORKSPACES_FILE": good, "SEAM_API_KEY": "seam_test_key"},
			[]string{"WORKSPACES_FILE", "SEAM_API_KEY"}},
		{"with WORKER_API_TOKEN", map[string]string{"WORKSPACES_FILE": good, "WORKER_API_TOKEN": token},
			[]string{"WORKSPACES_FILE", "WORKER_API_TOKEN"}},
		{"with WORKER_API_TOKEN_FILE", map[string]string{"WORKSPACES_FILE": good, "WORKER_API_TOKEN_FILE": tokenFile},
			[]string{"WORKSPACES_FILE", "WORKER_API_TOKEN"}},
		{"with SEAM_WORKSPACE_ID", map[string]string{"WORKSPACES_FILE": good, "SEAM_WORKSPACE_ID": "ws-a"},
			[]string{"WORKSPACES_FILE", "SEAM_WORKSPACE_ID"}},
		{"no api_tokens on a public address", map[string]string{"WORKSPACES_FILE": noTokens, "WORKER_API_ADDR": ":8081"},
			[]string{"WORKSPACES_FILE", "api_tokens is empty", "WORKER_API_INSECURE=true"}},
		{"token naming an unconfigured workspace", map[string]string{"WORKSPACES_FILE": file("unknown-ws.yaml",
			ws+"api_tokens:\n  - name: desk\n    token: "+token+"\n    workspaces: [ws-z]\n")},
			[]string{"WORKSPACES_FILE", "api_tokens[0] (desk)", `workspace "ws-z" is not configured`}},
		{"short token", map[string]string{"WORKSPACES_FILE": file("short.yaml",
			ws+"api_tokens:\n  - name: desk\n    token: short\n    workspaces: [ws-a]\n")},
			[]string{"api_tokens[0] (desk)", "at least 16 characters"}},
		{"PAT as a workspace key", map[string]string{"WORKSPACES_FILE": file("pat.yaml",
			"workspaces:\n  - workspace_id: ws-a\n    webhook_secrets: [\"whsec_QUJDREVGR0hJSktMTU5PUA==\"]\n    seam_api_key: seam_at_personal\napi_tokens:\n  - token: "+token+"\n    workspaces: [ws-a]\n")},
			[]string{"workspaces[0] (ws-a)", "seam_personal_access_token"}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := map[string]string{"WORKER_API_ADDR": "127.0.0.1:0"}
			for k, v := range c.Env {
				env[k] = v
			}
			err := run(t.Context(), nil, func(k string) string { return env[k] }, &bytes.Buffer{})
			require.Error(t, err)
			for _, want := range c.Want {
				require.ErrorContains(t, err, want)
			}
			require.NotContains(t, err.Error(), token, "errors never carry a token")
			require.NotContains(t, err.Error(), "seam_at_personal", "errors never carry a key")
		})
	}
}

// A reload must not open an API that listens beyond loopback: a file
// whose api_tokens are emptied is refused there, as it is at start-up.
func TestRunRefusesReloadThatOpensPublicAPI(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	token := "operators-" + uuid.NewString()
	path := filepath.Join(t.TempDir(), "workspaces.yaml")
	const ws = "workspaces:\n  - workspace_id: ws-a\n    webhook_secrets: [\"whsec_QUJDREVGR0hJSktMTU5PUA==\"]\n"
	writeWorkspaces(t, path, ws+"api_tokens:\n  - token: "+token+"\n    workspaces: [\"*\"]\n")

	logs := logtest.NewSink()
	env := map[string]string{
		"NATS_URL": srv.ClientURL(), "WORKER_API_ADDR": ":0", "ADMIN_ADDR": "127.0.0.1:0",
		"WORKSPACES_FILE": path, "WORKSPACES_RELOAD_INTERVAL": "100ms",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	_, port, err := net.SplitHostPort(logs.Wait(t, "listening", "api")["addr"].(string))
	require.NoError(t, err)
	encodings := "http://127.0.0.1:" + port + "/v1/encodings"
	require.Equal(t, http.StatusCreated, callAPI(t, http.MethodPost, encodings, token, trackOnly("ws-a")).Status)

	writeWorkspaces(t, path, ws)
	bad := logs.Wait(t, "WORKSPACES_FILE not reloaded; the last good configuration stays in force", "workspaces")
	require.Contains(t, bad["error"], "api_tokens is empty")
	require.Equal(t, http.StatusUnauthorized, callAPI(t, http.MethodPost, encodings, "", trackOnly("ws-a")).Status, "still closed")
	require.Equal(t, http.StatusCreated, callAPI(t, http.MethodPost, encodings, token, trackOnly("ws-a")).Status)
}

// The worker runs the catch-up: an event Seam made whose webhook never
// came is found in Seam's log at start-up and stored in SEAM_EVENTS.
func TestRunCatchesUpFromSeamsEventLog(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	const key, wsID = "seam_test_catchup", "ws-catchup"
	sim, err := seamsim.New(seamsim.Options{APIKey: key, WorkspaceID: wsID, EncodeDelay: time.Millisecond, Log: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer = simSrv.URL, key, prometheus.NewRegistry()
	client, err := seam.New(co)
	require.NoError(t, err)
	// No webhook at all: the event is only in Seam's log.
	attempt, err := client.EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: uuid.NewString(), AcsCredentialID: uuid.NewString()})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(sim.Events()) == 1 }, 10*time.Second, 5*time.Millisecond, "attempt %s resolved", attempt.ActionAttemptID)

	logs := logtest.NewSink()
	env := map[string]string{
		"NATS_URL": srv.ClientURL(), "WORKER_API_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
		"SEAM_API_KEY": key, "SEAM_API_URL": simSrv.URL, "SEAM_WORKSPACE_ID": wsID,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	found := logs.Wait(t, "catch-up stored an event the webhooks had missed", "catchup")
	require.Equal(t, wsID, found["workspace_id"])
	admin := logs.Wait(t, "listening", "admin")["addr"].(string)
	mfs := scrape(admin)
	require.Equal(t, 1.0, mfs.Value("cardwire_catchup_events_total", "result", "missed"))
	require.Equal(t, 1.0, mfs.Value("cardwire_catchup_lease_held"))
}
