package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	require.EqualValues(t, 3, stream.CachedInfo().State.Msgs, "two events and one quarantined body")
	require.EqualValues(t, 30*time.Minute, stream.CachedInfo().Config.Duplicates)

	mfs, err := promtest.Scrape("http://" + in.admin + "/metrics")
	require.NoError(t, err)
	require.EqualValues(t, 2, mfs.Value("cardwire_receiver_requests_total", "outcome", "accepted"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "invalid_signature", "reason", "missing_headers"))
	require.EqualValues(t, 0, mfs.Value("cardwire_receiver_requests_total", "outcome", "unavailable", "reason", "nats"))
	require.EqualValues(t, 0, mfs.Value("cardwire_receiver_requests_total", "outcome", "overloaded"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "duplicate"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "quarantined", "reason", "not_json"))
	require.EqualValues(t, 1, mfs.Value("cardwire_receiver_requests_total", "outcome", "too_large"))
	require.EqualValues(t, 2, mfs.Value("cardwire_receiver_events_total", "event_type", "acs_credential.issued"))
	require.EqualValues(t, 4, mfs.Value("cardwire_receiver_publish_duration_seconds"))
	require.EqualValues(t, 2, mfs.Value("cardwire_receiver_request_duration_seconds", "outcome", "accepted"))
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
