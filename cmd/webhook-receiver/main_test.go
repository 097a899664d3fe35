package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/logtest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/streams"
)

func newSecret(t testing.TB) string {
	t.Helper()
	key := make([]byte, 24)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

type instance struct {
	public, admin string
	logs          *logtest.Sink
	cancel        context.CancelFunc
	done          chan error
}

// start runs the receiver in-process with env on top of test defaults.
func start(t *testing.T, env map[string]string) *instance {
	t.Helper()
	base := map[string]string{
		"RECEIVER_ADDR": "127.0.0.1:0",
		"ADMIN_ADDR":    "127.0.0.1:0",
		"LOG_LEVEL":     "debug",
	}
	for k, v := range env {
		base[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{logs: logtest.NewSink(), cancel: cancel, done: make(chan error, 1)}
	go func() { in.done <- run(ctx, nil, func(k string) string { return base[k] }, in.logs) }()
	t.Cleanup(func() {
		cancel()
		<-in.done
	})
	in.admin = in.logs.Wait(t, "listening", "admin")["addr"].(string)
	in.public = in.logs.Wait(t, "listening", "receiver")["addr"].(string)
	return in
}

func (in *instance) stop(t testing.TB) error {
	t.Helper()
	in.cancel()
	select {
	case err := <-in.done:
		in.done <- err // for Cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
		return nil
	}
}

func signedRequest(t testing.TB, url, secret, id string, body []byte) *http.Request {
	t.Helper()
	wh, err := svix.NewWebhook(secret)
	require.NoError(t, err)
	now := time.Now()
	sig, err := wh.Sign(id, now, body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	return req
}

const issued = `{"event_id":"8d4f1a62-1f0c-4b5e-9d59-5a2b7c3e9f01","event_type":"acs_credential.issued","workspace_id":"6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11","created_at":"2026-11-24T10:15:02.113Z","occurred_at":"2026-11-24T10:15:01.870Z","acs_credential_id":"2f7b9c41-5d7e-4f0e-8a3b-91c2d4e5f601"}`

func TestRunFailsClosed(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, []byte(newSecret(t)+"\n"), 0o600))
	testCases := []struct {
		Name string
		Env  map[string]string
		Want string
	}{
		{"no secret", map[string]string{}, "SEAM_WEBHOOK_SECRET or SEAM_WEBHOOK_SECRET_FILE must be set"},
		{"blank secret", map[string]string{"SEAM_WEBHOOK_SECRET": " , "}, "SEAM_WEBHOOK_SECRET or SEAM_WEBHOOK_SECRET_FILE must be set"},
		{"not base64", map[string]string{"SEAM_WEBHOOK_SECRET": "whsec_!!!notbase64"}, "SEAM_WEBHOOK_SECRET: webhook secret #1 is not a valid whsec_ base64 secret"},
		{"empty key", map[string]string{"SEAM_WEBHOOK_SECRET": newSecret(t) + ",whsec_"}, "webhook secret #2 is not a valid"},
		{"both value and file", map[string]string{"SEAM_WEBHOOK_SECRET": newSecret(t), "SEAM_WEBHOOK_SECRET_FILE": secretFile}, "at most one of SEAM_WEBHOOK_SECRET and SEAM_WEBHOOK_SECRET_FILE"},
		{"missing file", map[string]string{"SEAM_WEBHOOK_SECRET_FILE": filepath.Join(t.TempDir(), "nope")}, "SEAM_WEBHOOK_SECRET_FILE: open"},
		{"bad duration", map[string]string{"SEAM_WEBHOOK_SECRET": newSecret(t), "RECEIVER_PUBLISH_TIMEOUT": "soon"}, "RECEIVER_PUBLISH_TIMEOUT: want a positive Go duration"},
		{"publish timeout beyond svix", map[string]string{"SEAM_WEBHOOK_SECRET": newSecret(t), "RECEIVER_PUBLISH_TIMEOUT": "20s"}, "RECEIVER_PUBLISH_TIMEOUT must be below Svix's 15s"},
		{"bad size", map[string]string{"SEAM_WEBHOOK_SECRET": newSecret(t), "RECEIVER_MAX_BODY_BYTES": "-1"}, "RECEIVER_MAX_BODY_BYTES: want a positive integer"},
		{"bad log format", map[string]string{"SEAM_WEBHOOK_SECRET": newSecret(t), "LOG_FORMAT": "xml"}, "LOG_FORMAT: want json or console"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), nil, func(k string) string { return c.Env[k] }, &out)
			require.ErrorContains(t, err, c.Want)
			for _, v := range c.Env {
				if strings.HasPrefix(v, "whsec_") && len(v) > len("whsec_") {
					require.NotContains(t, err.Error(), v, "errors never carry a secret")
				}
			}
		})
	}
}

func TestRunStoresSignedWebhookAndServesAdmin(t *testing.T) {
	srv := natstest.RunJetStream(t)
	oldSecret, newSecretValue := newSecret(t), newSecret(t)
	secretFile := filepath.Join(t.TempDir(), "secrets")
	// Rotation through the file: one secret per line.
	require.NoError(t, os.WriteFile(secretFile, []byte(oldSecret+"\n"+newSecretValue+"\n"), 0o600))
	in := start(t, map[string]string{"NATS_URL": srv.ClientURL(), "SEAM_WEBHOOK_SECRET_FILE": secretFile})

	resp, err := http.Get("http://" + in.admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "ready once the stream exists")

	url := "http://" + in.public + "/webhooks/seam"
	for i, secret := range []string{oldSecret, newSecretValue} {
		resp, err := http.DefaultClient.Do(signedRequest(t, url, secret, fmt.Sprintf("msg_run%d", i), []byte(issued)))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
	}
	resp, err = http.Post(url, "application/json", strings.NewReader(issued))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	// A duplicate, a quarantined body, an oversize body.
	for _, body := range []string{issued, "not json", strings.Repeat("x", 300<<10)} {
		id := "msg_run0"
		if body != issued {
			id = fmt.Sprintf("msg_other%d", len(body))
		}
		resp, err := http.DefaultClient.Do(signedRequest(t, url, oldSecret, id, []byte(body)))
		require.NoError(t, err)
		resp.Body.Close()
	}

	_, js := natstest.Connect(t, srv.ClientURL())
	stream, err := js.Stream(t.Context(), streams.EventsStream)
	require.NoError(t, err)
	require.EqualValues(t, 2, stream.CachedInfo().State.Msgs, "one event (delivered by two webhooks, as during a rotation) and one quarantined body")
	require.EqualValues(t, time.Hour, stream.CachedInfo().Config.Duplicates)

	mfs, err := promtest.Scrape("http://" + in.admin + "/metrics")
	require.NoError(t, err)
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "accepted"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "invalid_signature", "reason", "missing_headers"))
	require.EqualValues(t, 0, mfs.Value("cardwire_receiver_requests_total", "outcome", "unavailable", "reason", "nats"))
	require.EqualValues(t, 0, mfs.Value("cardwire_receiver_requests_total", "outcome", "overloaded"))
	require.EqualValues(t, 2, mfs.Value("cardwire_receiver_requests_total", "outcome", "duplicate"), "the second webhook and the retry")
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "quarantined", "reason", "not_json"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "too_large"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_events_total", "event_type", "acs_credential.issued"))
	require.EqualValues(t, 4, mfs.Value("cardwire_receiver_publish_duration_seconds"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_request_duration_seconds", "outcome", "accepted"))
	require.EqualValues(t, 0, mfs.Value("cardwire_receiver_in_flight_publishes"))
	require.EqualValues(t, 1, mfs.Value("cardwire_nats_connected"))
	require.Positive(t, mfs.Value("go_goroutines"))
	require.Positive(t, mfs.Value("process_cpu_seconds_total")+1)

	require.NotContains(t, in.logs.String(), strings.TrimPrefix(oldSecret, "whsec_"))
	require.NoError(t, in.stop(t))
	in.logs.Wait(t, "stopped", "lifecycle")
}

func TestRunAnswersInFlightRequestOnShutdown(t *testing.T) {
	srv := natstest.RunJetStream(t)
	secret := newSecret(t)
	in := start(t, map[string]string{"NATS_URL": srv.ClientURL(), "SEAM_WEBHOOK_SECRET": secret})

	// Send the headers and half the body, then ask the receiver to stop: the
	// request is in flight and must still be answered (and stored).
	req := signedRequest(t, "http://"+in.public+"/webhooks/seam", secret, "msg_shutdown", []byte(issued))
	conn, err := net.Dial("tcp", in.public)
	require.NoError(t, err)
	defer conn.Close()
	var head bytes.Buffer
	fmt.Fprintf(&head, "POST /webhooks/seam HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", in.public, len(issued))
	for _, k := range []string{"svix-id", "svix-timestamp", "svix-signature"} {
		fmt.Fprintf(&head, "%s: %s\r\n", k, req.Header.Get(k))
	}
	head.WriteString("\r\n")
	head.WriteString(issued[:len(issued)/2])
	_, err = conn.Write(head.Bytes())
	require.NoError(t, err)
	// The handler is reading the body once the request counts as in flight
	// (external state, so polled).
	require.Eventually(t, func() bool {
		mfs, err := promtest.Scrape("http://" + in.admin + "/metrics")
		return err == nil && mfs.Value("cardwire_receiver_requests_in_flight") == 1
	}, 10*time.Second, 10*time.Millisecond)

	stopped := make(chan error, 1)
	go func() { stopped <- in.stop(t) }()
	in.logs.Wait(t, "shutting down", "")

	_, err = conn.Write([]byte(issued[len(issued)/2:]))
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NoError(t, <-stopped)

	_, js := natstest.Connect(t, srv.ClientURL())
	stream, err := js.Stream(t.Context(), streams.EventsStream)
	require.NoError(t, err)
	require.EqualValues(t, 1, stream.CachedInfo().State.Msgs)
}

func TestRunWaitsForNATSAndIsNotReadyMeanwhile(t *testing.T) {
	srv := natstest.RunJetStream(t)
	url := srv.ClientURL()
	srv.Stop()
	in := &instance{logs: logtest.NewSink(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	env := map[string]string{"NATS_URL": url, "SEAM_WEBHOOK_SECRET": newSecret(t), "ADMIN_ADDR": "127.0.0.1:0", "RECEIVER_ADDR": "127.0.0.1:0"}
	go func() { in.done <- run(ctx, nil, func(k string) string { return env[k] }, in.logs) }()
	t.Cleanup(func() { cancel(); <-in.done })

	line := in.logs.Wait(t, "listening", "admin")
	// The version is on every line, so a pod stuck waiting for NATS shows it.
	require.Equal(t, lifecycle.Version(), line["version"])
	admin := line["addr"].(string)
	resp, err := http.Get("http://" + admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, err = http.Get("http://" + admin + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	srv.Restart(t)
	in.logs.Wait(t, "listening", "receiver")
	resp, err = http.Get("http://" + admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestRunWithStreamManagedElsewhere(t *testing.T) {
	srv := natstest.RunJetStream(t)
	secret := newSecret(t)
	in := start(t, map[string]string{"NATS_URL": srv.ClientURL(), "SEAM_WEBHOOK_SECRET": secret, "SEAM_EVENTS_MANAGE": "false"})
	_, js := natstest.Connect(t, srv.ClientURL())
	_, err := js.Stream(t.Context(), streams.EventsStream)
	require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "the receiver must not create the stream")

	resp, err := http.Get("http://" + in.admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "not ready while the stream is missing")
	resp, err = http.DefaultClient.Do(signedRequest(t, "http://"+in.public+"/webhooks/seam", secret, "msg_unmanaged", []byte(issued)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	// Once the operator creates it, the same receiver stores.
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	resp, err = http.DefaultClient.Do(signedRequest(t, "http://"+in.public+"/webhooks/seam", secret, "msg_unmanaged2", []byte(issued)))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
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

// eventOf is an acs_credential.issued event of workspace ws.
func eventOf(ws string) []byte {
	return []byte(fmt.Sprintf(`{"event_id":%q,"event_type":"acs_credential.issued","workspace_id":%q,"created_at":"2026-11-24T10:15:02.113Z","occurred_at":"2026-11-24T10:15:01.870Z","acs_credential_id":"2f7b9c41-5d7e-4f0e-8a3b-91c2d4e5f601"}`,
		uuid.NewString(), ws))
}

// deliver posts an event of workspace ws signed with secret, and returns
// the status and, for an error, the error's type and message.
func deliver(t testing.TB, in *instance, secret, id, ws string) (int, string, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(signedRequest(t, "http://"+in.public+"/webhooks/seam", secret, id, eventOf(ws)))
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if resp.StatusCode != http.StatusNoContent {
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	}
	return resp.StatusCode, body.Error.Type, body.Error.Message
}

func TestRunWithWorkspacesFileVerifiesPerWorkspaceAndReloads(t *testing.T) {
	srv := natstest.RunJetStream(t)
	secretA, secretB, secretC, rotatedA := newSecret(t), newSecret(t), newSecret(t), newSecret(t)
	path := filepath.Join(t.TempDir(), "workspaces.yaml")
	writeWorkspaces(t, path, fmt.Sprintf(`workspaces:
  - workspace_id: ws-a
    name: Hotel A
    webhook_secrets: [%q]
  - workspace_id: ws-b
    webhook_secrets: [%q]
`, secretA, secretB))
	in := start(t, map[string]string{"NATS_URL": srv.ClientURL(), "WORKSPACES_FILE": path, "WORKSPACES_RELOAD_INTERVAL": "100ms"})
	started := in.logs.Wait(t, "receiver started", "")
	require.EqualValues(t, 2, started["workspaces"])

	type delivery struct {
		Name       string
		Secret     string
		Workspace  string
		WantStatus int
		WantReason string // the end of the 401's message
	}
	check := func(t *testing.T, step string, cases []delivery) {
		t.Helper()
		for i, c := range cases {
			t.Run(step+"/"+c.Name, func(t *testing.T) {
				status, typ, msg := deliver(t, in, c.Secret, fmt.Sprintf("msg_%s_%d", step, i), c.Workspace)
				require.Equal(t, c.WantStatus, status)
				if c.WantStatus == http.StatusUnauthorized {
					require.Equal(t, "invalid_signature", typ)
					require.True(t, strings.HasSuffix(msg, ": "+c.WantReason), "message %q, want reason %s", msg, c.WantReason)
				}
			})
		}
	}

	check(t, "initial", []delivery{
		{"A with A's secret", secretA, "ws-a", http.StatusNoContent, ""},
		{"B with A's secret", secretA, "ws-b", http.StatusUnauthorized, "bad_signature"},
		{"B with B's secret", secretB, "ws-b", http.StatusNoContent, ""},
		{"C not configured", secretC, "ws-c", http.StatusUnauthorized, "unknown_workspace"},
	})

	// C added, A's secret rotated (the new one only).
	writeWorkspaces(t, path, fmt.Sprintf(`workspaces:
  - workspace_id: ws-a
    name: Hotel A
    webhook_secrets: [%q]
  - workspace_id: ws-b
    webhook_secrets: [%q]
  - workspace_id: ws-c
    name: Hotel C
    webhook_secrets: [%q]
`, rotatedA, secretB, secretC))
	line := in.logs.Wait(t, "WORKSPACES_FILE reloaded", "workspaces")
	require.ElementsMatch(t, []any{"webhook secrets changed: Hotel A (ws-a)", "workspace added: Hotel C (ws-c)"}, line["changes"])
	require.EqualValues(t, 3, line["workspaces"])

	check(t, "reloaded", []delivery{
		{"C with C's secret", secretC, "ws-c", http.StatusNoContent, ""},
		{"A with the old secret", secretA, "ws-a", http.StatusUnauthorized, "bad_signature"},
		{"A with the new secret", rotatedA, "ws-a", http.StatusNoContent, ""},
		{"B unchanged", secretB, "ws-b", http.StatusNoContent, ""},
	})

	// A workspace whose events could not be verified: refused, and the
	// last good configuration stays in force.
	writeWorkspaces(t, path, fmt.Sprintf(`workspaces:
  - workspace_id: ws-a
    webhook_secrets: []
  - workspace_id: ws-c
    webhook_secrets: [%q]
`, secretC))
	bad := in.logs.Wait(t, "WORKSPACES_FILE not reloaded; the last good configuration stays in force", "workspaces")
	require.Contains(t, bad["error"], "workspaces[0] (ws-a): webhook_secrets is empty")

	check(t, "refused", []delivery{
		{"C still accepted", secretC, "ws-c", http.StatusNoContent, ""},
		{"A with the new secret", rotatedA, "ws-a", http.StatusNoContent, ""},
		{"B still configured", secretB, "ws-b", http.StatusNoContent, ""},
	})

	resp, err := http.Get("http://" + in.admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "a refused reload does not make the receiver unready")

	// The refused content is polled every 100ms but counted (and logged)
	// once: nothing to wait for, so a few intervals pass without a change.
	require.Never(t, func() bool {
		return scrapeValue(t, in, "cardwire_config_reload_errors_total") != 1
	}, 400*time.Millisecond, 50*time.Millisecond)
	mfs, err := promtest.Scrape("http://" + in.admin + "/metrics")
	require.NoError(t, err)
	require.EqualValues(t, 1, mfs.Value("cardwire_config_reload_errors_total"))
	require.EqualValues(t, 1, mfs.Value("cardwire_config_reloads_total"))
	require.EqualValues(t, 0, mfs.Value("cardwire_config_last_reload_successful"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "invalid_signature", "reason", "unknown_workspace"))
	require.EqualValues(t, 2, mfs.Value("cardwire_receiver_requests_total", "outcome", "invalid_signature", "reason", "bad_signature"))

	logs := in.logs.String()
	require.Equal(t, 1, strings.Count(logs, "WORKSPACES_FILE not reloaded"))
	for _, s := range []string{secretA, secretB, secretC, rotatedA} {
		require.NotContains(t, logs, strings.TrimPrefix(s, "whsec_"), "no secret is logged")
	}
	require.NoError(t, in.stop(t))
}

func scrapeValue(t testing.TB, in *instance, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := promtest.Scrape("http://" + in.admin + "/metrics")
	if err != nil {
		return -1
	}
	return mfs.Value(name, labels...)
}

func TestRunRefusesBadWorkspacesFile(t *testing.T) {
	secret := newSecret(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		return path
	}
	good := file("good.yaml", fmt.Sprintf("workspaces:\n  - workspace_id: a\n    webhook_secrets: [%q]\n", secret))
	secretFile := file("secret", secret+"\n")
	testCases := []struct {
		Name string
		Env  map[string]string
		Want []string
	}{
		{"with SEAM_WEBHOOK_SECRET", map[string]string{"WORKSPACES_FILE": good, "SEAM_WEBHOOK_SECRET": secret},
			[]string{"WORKSPACES_FILE", "SEAM_WEBHOOK_SECRET"}},
		{"with SEAM_WEBHOOK_SECRET_FILE", map[string]string{"WORKSPACES_FILE": good, "SEAM_WEBHOOK_SECRET_FILE": secretFile},
			[]string{"WORKSPACES_FILE", "SEAM_WEBHOOK_SECRET_FILE"}},
		{"duplicate workspace_id", map[string]string{"WORKSPACES_FILE": file("dup.yaml", fmt.Sprintf(
			"workspaces:\n  - workspace_id: a\n    webhook_secrets: [%q]\n  - workspace_id: a\n    webhook_secrets: [%q]\n", secret, secret))},
			[]string{"WORKSPACES_FILE", "workspaces[1] (a)", "configured twice"}},
		{"unknown field", map[string]string{"WORKSPACES_FILE": file("unknown.yaml", fmt.Sprintf(
			"workspaces:\n  - workspace_id: a\n    webhook_secret: [%q]\n", secret))},
			[]string{"WORKSPACES_FILE", `unknown field "webhook_secret"`}},
		{"secret not whsec", map[string]string{"WORKSPACES_FILE": file("notwhsec.yaml",
			"workspaces:\n  - workspace_id: a\n    name: Hotel A\n    webhook_secrets: [seam_test_aurora_key]\n")},
			[]string{"WORKSPACES_FILE", "Hotel A", "webhook secret #1 is not a valid whsec_ base64 secret"}},
		{"empty whsec", map[string]string{"WORKSPACES_FILE": file("emptywhsec.yaml",
			"workspaces:\n  - workspace_id: a\n    webhook_secrets: [whsec_]\n")},
			[]string{"WORKSPACES_FILE", "webhook secret #1 is not a valid"}},
		{"no workspaces", map[string]string{"WORKSPACES_FILE": file("empty.yaml", "workspaces: []\n")},
			[]string{"WORKSPACES_FILE", "at least one workspace is required"}},
		{"missing file", map[string]string{"WORKSPACES_FILE": filepath.Join(dir, "nope.yaml")},
			[]string{"WORKSPACES_FILE", "nope.yaml"}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := run(t.Context(), nil, func(k string) string { return c.Env[k] }, &bytes.Buffer{})
			require.Error(t, err)
			for _, want := range c.Want {
				require.ErrorContains(t, err, want)
			}
			require.NotContains(t, err.Error(), strings.TrimPrefix(secret, "whsec_"), "errors never carry a secret")
			require.NotContains(t, err.Error(), "seam_test_aurora_key", "errors never carry a secret")
		})
	}
}

func TestRunReloadsWebhookSecretsFile(t *testing.T) {
	srv := natstest.RunJetStream(t)
	dir := t.TempDir()
	oldSecret, rotated := newSecret(t), newSecret(t)
	// The Kubernetes layout: the secrets in their own key, named by the
	// file. Only the secrets file changes.
	secrets := filepath.Join(dir, "a-secrets")
	writeWorkspaces(t, secrets, oldSecret+"\n")
	path := filepath.Join(dir, "workspaces.yaml")
	writeWorkspaces(t, path, "workspaces:\n  - workspace_id: ws-a\n    webhook_secrets_file: a-secrets\n")
	in := start(t, map[string]string{"NATS_URL": srv.ClientURL(), "WORKSPACES_FILE": path, "WORKSPACES_RELOAD_INTERVAL": "100ms"})
	status, _, _ := deliver(t, in, oldSecret, "msg_file_0", "ws-a")
	require.Equal(t, http.StatusNoContent, status)

	writeWorkspaces(t, secrets, rotated+"\n")
	line := in.logs.Wait(t, "WORKSPACES_FILE reloaded", "workspaces")
	require.Equal(t, []any{"webhook secrets changed: ws-a (ws-a)"}, line["changes"])
	status, _, msg := deliver(t, in, oldSecret, "msg_file_1", "ws-a")
	require.Equal(t, http.StatusUnauthorized, status, msg)
	status, _, _ = deliver(t, in, rotated, "msg_file_2", "ws-a")
	require.Equal(t, http.StatusNoContent, status)
	require.NotContains(t, in.logs.String(), strings.TrimPrefix(rotated, "whsec_"))
}

// A refusal is logged and counted once per broken content, not on every
// poll; but the same broken content applied again after the good file was
// restored is a new refusal, which the operator who applied it must see.
func TestRunCountsEachRefusalOfWorkspacesFile(t *testing.T) {
	srv := natstest.RunJetStream(t)
	path := filepath.Join(t.TempDir(), "workspaces.yaml")
	good := fmt.Sprintf("workspaces:\n  - workspace_id: ws-a\n    webhook_secrets: [%q]\n", newSecret(t))
	broken := "workspaces:\n  - workspace_id: ws-a\n    webhook_secrets: []\n"
	writeWorkspaces(t, path, good)
	in := start(t, map[string]string{"NATS_URL": srv.ClientURL(), "WORKSPACES_FILE": path, "WORKSPACES_RELOAD_INTERVAL": "100ms"})
	lastReload := func(want float64) func() bool {
		return func() bool { return scrapeValue(t, in, "cardwire_config_last_reload_successful") == want }
	}

	writeWorkspaces(t, path, broken)
	in.logs.Wait(t, "WORKSPACES_FILE not reloaded; the last good configuration stays in force", "workspaces")
	// The good file again: the configuration in force, so no reload line;
	// the gauge says it was read.
	writeWorkspaces(t, path, good)
	require.Eventually(t, lastReload(1), 10*time.Second, 20*time.Millisecond)
	writeWorkspaces(t, path, broken)
	require.Eventually(t, lastReload(0), 10*time.Second, 20*time.Millisecond)

	require.EqualValues(t, 2, scrapeValue(t, in, "cardwire_config_reload_errors_total"), "the second refusal is counted")
	require.Equal(t, 2, strings.Count(in.logs.String(), "WORKSPACES_FILE not reloaded"), "the second refusal is logged")
}
