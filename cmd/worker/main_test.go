package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/logtest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
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
