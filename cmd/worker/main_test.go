package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

// logSink collects run's JSON log lines and lets a test wait for one.
type logSink struct {
	mu      sync.Mutex
	lines   []map[string]any
	changed chan struct{}
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for line := range bytes.Lines(p) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			s.lines = append(s.lines, m)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return len(p), nil
}

func (s *logSink) waitMsg(t testing.TB, msg, component string) map[string]any {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		for _, l := range s.lines {
			if l["message"] == msg && (component == "" || l["component"] == component) {
				s.mu.Unlock()
				return l
			}
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no log line %q from %q", msg, component)
		}
	}
}

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

	logs := &logSink{changed: make(chan struct{})}
	env := map[string]string{
		"NATS_URL": srv.ClientURL(), "WORKER_API_ADDR": "127.0.0.1:0", "ADMIN_ADDR": "127.0.0.1:0",
		"WORKER_API_TOKEN": "tok", "SEAM_WORKSPACE_ID": "ws-1",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := logs.waitMsg(t, "listening", "admin")["addr"].(string)
	api := logs.waitMsg(t, "listening", "api")["addr"].(string)

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

	require.Eventually(t, func() bool { return gauge(scrapeOrNil(admin), "cardwire_worker_encodings_pending") == 1 },
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

	require.Eventually(t, func() bool { return gauge(scrapeOrNil(admin), "cardwire_worker_encodings_pending") == 0 },
		10*time.Second, 10*time.Millisecond)
	mfs := scrapeOrNil(admin)
	require.NotNil(t, mfs)
	require.EqualValues(t, 1, series(mfs, "cardwire_worker_events_total", "event_type", "acs_credential.issued", "result", "matched"))
	require.EqualValues(t, 1, series(mfs, "cardwire_worker_encodings_resolved_total", "status", "issued", "resolved_by", "webhook"))
	require.EqualValues(t, 1, series(mfs, "cardwire_worker_resolve_duration_seconds"))
	require.EqualValues(t, 1, series(mfs, "cardwire_worker_event_lag_seconds"))
	require.EqualValues(t, 1, series(mfs, "cardwire_worker_handle_duration_seconds", "result", "matched"))
	require.EqualValues(t, 1, series(mfs, "cardwire_worker_api_requests_total", "route", "register", "code", "201"))
	require.EqualValues(t, 0, series(mfs, "cardwire_worker_consumer_pending"))
	require.EqualValues(t, 1, series(mfs, "cardwire_nats_connected"))

	resp, err = http.Get("http://" + admin + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	require.NoError(t, <-done)
	done <- nil
	logs.waitMsg(t, "stopped", "lifecycle")
}

func scrapeOrNil(addr string) map[string]*dto.MetricFamily {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil
	}
	return mfs
}

func gauge(mfs map[string]*dto.MetricFamily, name string) float64 { return series(mfs, name) }

// series is the value (or histogram count) of the series with the given
// labels, summed, or -1 when the metric is absent.
func series(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf, ok := mfs[name]
	if !ok {
		return -1
	}
	total := 0.0
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}
