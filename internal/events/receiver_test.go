package events_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/streams"
)

func TestAcceptedEventIsStoredOnceWithHeaders(t *testing.T) {
	h := newHarness(t, nil)
	body := golden(t, "acs_credential_issued.json")
	hdr := signed(t, h.secrets[0], "msg_2Lh1accepted", time.Now(), body)
	hdr.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

	for range 3 {
		require.Equal(t, http.StatusNoContent, h.post(t, hdr, body).Status)
	}

	require.EqualValues(t, 1, h.msgCount(t), "three deliveries of one webhook are one message")
	m := h.last(t, "seam.events."+testWorkspace+".acs_credential.issued")
	require.Equal(t, body, m.Data, "the body is stored unchanged")
	want := map[string]string{
		"Nats-Msg-Id":                  "evt:8d4f1a62-1f0c-4b5e-9d59-5a2b7c3e9f01",
		streams.HeaderWebhookID:        "msg_2Lh1accepted",
		streams.HeaderWebhookTimestamp: hdr.Get("svix-timestamp"),
		streams.HeaderEventID:          "8d4f1a62-1f0c-4b5e-9d59-5a2b7c3e9f01",
		streams.HeaderEventType:        "acs_credential.issued",
		streams.HeaderWorkspaceID:      testWorkspace,
		streams.HeaderTraceparent:      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	}
	for k, v := range want {
		require.Equal(t, v, m.Header.Get(k), "header %s", k)
	}
	require.EqualValues(t, 1, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeAccepted))
	require.EqualValues(t, 2, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeDuplicate))
	require.EqualValues(t, 1, metric(t, h.reg, "cardwire_receiver_events_total", "event_type", "acs_credential.issued"))

	// The same event through a second webhook (a secret rotation: another
	// webhook id, the other secret) is the same message.
	second := signed(t, h.secrets[1], "msg_2Lh1otherhook", time.Now(), body)
	require.Equal(t, http.StatusNoContent, h.post(t, second, body).Status)
	require.EqualValues(t, 1, h.msgCount(t), "one event, however many webhooks deliver it")
	require.EqualValues(t, 3, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeDuplicate))
}

func TestEveryEventTypeIsAccepted(t *testing.T) {
	h := newHarness(t, nil)
	testCases := []struct {
		File    string
		Subject string
		Label   string
	}{
		{"acs_credential_reissued.json", "seam.events." + testWorkspace + ".acs_credential.reissued", "acs_credential.reissued"},
		{"access_method_issued.json", "seam.events." + testWorkspace + ".access_method.issued", "access_method.issued"},
		{"acs_encoder_removed.json", "seam.events." + testWorkspace + ".acs_encoder.removed", "acs_encoder.removed"},
		{"future_event_type.json", "seam.events." + testWorkspace + ".acs_credential.some_future_thing", "other"},
	}
	for i, c := range testCases {
		t.Run(c.File, func(t *testing.T) {
			body := golden(t, c.File)
			a := h.post(t, signed(t, h.secrets[0], fmt.Sprintf("msg_type%d", i), time.Now(), body), body)
			require.Equal(t, http.StatusNoContent, a.Status)
			require.Equal(t, body, h.last(t, c.Subject).Data)
			require.EqualValues(t, 1, metric(t, h.reg, "cardwire_receiver_events_total", "event_type", c.Label))
		})
	}
}

func TestWebhookHeaderNamesAndRotation(t *testing.T) {
	h := newHarness(t, nil)
	other := newSecret(t)
	withWebhookNames := func(src http.Header) http.Header {
		out := http.Header{}
		out.Set("webhook-id", src.Get("svix-id"))
		out.Set("webhook-timestamp", src.Get("svix-timestamp"))
		out.Set("webhook-signature", src.Get("svix-signature"))
		return out
	}
	testCases := []struct {
		Name   string
		Header func(id string, body []byte) http.Header
	}{
		{"first secret", func(id string, body []byte) http.Header { return signed(t, h.secrets[0], id, time.Now(), body) }},
		{"second secret", func(id string, body []byte) http.Header { return signed(t, h.secrets[1], id, time.Now(), body) }},
		{"webhook-* header names", func(id string, body []byte) http.Header {
			return withWebhookNames(signed(t, h.secrets[1], id, time.Now(), body))
		}},
		{"several v1 entries, one matches", func(id string, body []byte) http.Header {
			good := signed(t, h.secrets[0], id, time.Now(), body)
			bad := signed(t, other, id, time.Now(), body)
			good.Set("svix-signature", bad.Get("svix-signature")+" v2,bm9wZQ== "+good.Get("svix-signature"))
			return good
		}},
	}
	for i, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			before := h.msgCount(t)
			body := eventFor(t, testWorkspace)
			a := h.post(t, c.Header(fmt.Sprintf("msg_rot%d", i), body), body)
			require.Equal(t, http.StatusNoContent, a.Status)
			require.Equal(t, before+1, h.msgCount(t))
		})
	}
}

func TestRejections(t *testing.T) {
	h := newHarness(t, func(o *events.Options) { o.MaxBodyBytes = 4096 })
	body := golden(t, "acs_credential_issued.json")
	big := []byte(`{"event_id":"e","event_type":"t","workspace_id":"w","pad":"` + strings.Repeat("x", 5000) + `"}`)
	testCases := []struct {
		Name    string
		Method  string
		Path    string
		Header  http.Header
		Body    []byte
		Status  int
		ErrType string
		Outcome string
		Reason  string
	}{
		{Name: "no headers", Header: http.Header{}, Body: body, Status: 401, ErrType: "invalid_signature",
			Outcome: events.OutcomeInvalidSignature, Reason: events.ReasonMissingHeaders},
		{Name: "wrong secret", Header: signed(t, newSecret(t), "msg_r1", time.Now(), body), Body: body, Status: 401,
			ErrType: "invalid_signature", Outcome: events.OutcomeInvalidSignature, Reason: events.ReasonNoMatchingSecret},
		{Name: "tampered body", Header: signed(t, h.secrets[0], "msg_r2", time.Now(), body),
			Body: []byte(strings.Replace(string(body), "issued", "reissued", 1)), Status: 401,
			ErrType: "invalid_signature", Outcome: events.OutcomeInvalidSignature, Reason: events.ReasonNoMatchingSecret},
		{Name: "timestamp 6 minutes old", Header: signed(t, h.secrets[0], "msg_r3", time.Now().Add(-6*time.Minute), body), Body: body,
			Status: 401, ErrType: "invalid_signature", Outcome: events.OutcomeInvalidSignature, Reason: events.ReasonTimestampTooOld},
		{Name: "timestamp 6 minutes ahead", Header: signed(t, h.secrets[0], "msg_r4", time.Now().Add(6*time.Minute), body), Body: body,
			Status: 401, ErrType: "invalid_signature", Outcome: events.OutcomeInvalidSignature, Reason: events.ReasonTimestampTooNew},
		{Name: "timestamp not a number", Header: func() http.Header {
			hd := signed(t, h.secrets[0], "msg_r5", time.Now(), body)
			hd.Set("svix-timestamp", "yesterday")
			return hd
		}(), Body: body, Status: 401, ErrType: "invalid_signature", Outcome: events.OutcomeInvalidSignature, Reason: events.ReasonInvalidHeaders},
		{Name: "oversize body", Header: signed(t, h.secrets[0], "msg_r6", time.Now(), big), Body: big,
			Status: 413, ErrType: "body_too_large", Outcome: events.OutcomeTooLarge},
		{Name: "wrong method", Method: http.MethodGet, Header: signed(t, h.secrets[0], "msg_r7", time.Now(), body),
			Status: 405, ErrType: "method_not_allowed", Outcome: events.OutcomeMethodNotAllowed},
		{Name: "wrong path", Path: "/webhooks/other", Header: signed(t, h.secrets[0], "msg_r8", time.Now(), body), Body: body,
			Status: 404, ErrType: "not_found", Outcome: events.OutcomeNotFound},
		{Name: "unclean path is not redirected", Path: "//webhooks/seam", Header: signed(t, h.secrets[0], "msg_r9", time.Now(), body), Body: body,
			Status: 404, ErrType: "not_found", Outcome: events.OutcomeNotFound},
		{Name: "root path", Path: "/", Status: 404, ErrType: "not_found", Body: body, Header: http.Header{}, Outcome: events.OutcomeNotFound},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			method, path := c.Method, c.Path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = events.Path
			}
			before := metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", c.Outcome, "reason", c.Reason)
			a := h.do(t, method, path, c.Header, c.Body)
			require.Equal(t, c.Status, a.Status)
			require.Equal(t, c.ErrType, a.ErrType)
			require.Zero(t, h.msgCount(t), "nothing is published")
			require.Equal(t, before+1, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", c.Outcome, "reason", c.Reason))
		})
	}
	logs := h.logs.String()
	for _, s := range h.secrets {
		require.NotContains(t, logs, s)
		require.NotContains(t, logs, strings.TrimPrefix(s, "whsec_"))
	}
	require.NotContains(t, logs, "v1,", "no signature in the logs")
	require.Contains(t, logs, `"reason":"timestamp_too_old"`, "each rejection has a log line with its reason")
}

func TestOversizeBodyWithoutContentLengthIsNotReadPastTheLimit(t *testing.T) {
	h := newHarness(t, func(o *events.Options) { o.MaxBodyBytes = 1024 })
	// A chunked body that never ends: the receiver must answer 413 after the
	// limit instead of reading for ever.
	pr, pw := net.Pipe()
	defer pr.Close()
	go func() {
		defer pw.Close()
		chunk := []byte(strings.Repeat("x", 512))
		for {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.srv.URL+events.Path, pr)
	require.NoError(t, err)
	req.ContentLength = -1
	resp, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Zero(t, h.msgCount(t))
}

func TestQuarantine(t *testing.T) {
	h := newHarness(t, nil)
	testCases := []struct {
		Name   string
		Body   string
		Reason string
	}{
		{"not json", `this is not json`, events.QuarantineNotJSON},
		{"no workspace_id", `{"event_id":"e1","event_type":"acs_credential.issued","occurred_at":"2026-11-24T10:00:00Z"}`, events.QuarantineMissingField},
		{"wildcard event type", `{"event_id":"e2","event_type":"acs_credential.*","workspace_id":"` + testWorkspace + `"}`, events.QuarantineInvalidSubject},
		{"full wildcard workspace", `{"event_id":"e3","event_type":"acs_credential.issued","workspace_id":">"}`, events.QuarantineInvalidSubject},
		{"space in workspace", `{"event_id":"e4","event_type":"acs_credential.issued","workspace_id":"a b"}`, events.QuarantineInvalidSubject},
		{"empty token in event type", `{"event_id":"e5","event_type":"acs_credential..issued","workspace_id":"` + testWorkspace + `"}`, events.QuarantineInvalidSubject},
		{"dotted workspace", `{"event_id":"e6","event_type":"issued","workspace_id":"a.b"}`, events.QuarantineInvalidSubject},
	}
	for i, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			id := fmt.Sprintf("msg_q%d", i)
			body := []byte(c.Body)
			before := metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeQuarantined, "reason", c.Reason)
			a := h.post(t, signed(t, h.secrets[0], id, time.Now(), body), body)
			require.Equal(t, http.StatusNoContent, a.Status, "verified deliveries are kept, so Svix must stop retrying")
			m := h.last(t, streams.QuarantineSubject)
			require.Equal(t, body, m.Data)
			require.Equal(t, id, m.Header.Get(streams.HeaderWebhookID))
			require.Equal(t, c.Reason, m.Header.Get(streams.HeaderQuarantineReason))
			require.Empty(t, m.Header.Get(streams.HeaderEventType), "no unverified routing header on a quarantined message")
			require.Equal(t, before+1, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeQuarantined, "reason", c.Reason))
		})
	}
	// Nothing but the quarantine subject was written.
	info, err := h.stream.Info(t.Context(), jetstream.WithSubjectFilter(">"))
	require.NoError(t, err)
	require.Equal(t, map[string]uint64{streams.QuarantineSubject: uint64(len(testCases))}, info.State.Subjects)
	require.Contains(t, h.logs.String(), `"webhook_id":"msg_q0"`)
}

func TestNATSDownAnswers503ThenRecovers(t *testing.T) {
	h := newHarness(t, nil)
	body := golden(t, "acs_credential_issued.json")

	h.nats.Stop()
	a := h.post(t, signed(t, h.secrets[0], "msg_down1", time.Now(), body), body)
	require.Equal(t, http.StatusServiceUnavailable, a.Status)
	require.Equal(t, "unavailable", a.ErrType)
	require.Equal(t, "5", a.Header.Get("Retry-After"))
	unavailable := 0.0
	for _, reason := range []string{"nats", "timeout", "stream"} {
		unavailable += metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeUnavailable, "reason", reason)
	}
	require.EqualValues(t, 1, unavailable)

	h.nats.Restart(t)
	require.NoError(t, waitStatus(t, h.nc, nats.CONNECTED))
	a = h.post(t, signed(t, h.secrets[0], "msg_down2", time.Now(), body), body)
	require.Equal(t, http.StatusNoContent, a.Status, "the same receiver stores again once NATS is back")
	require.EqualValues(t, 1, h.msgCount(t))
}

// waitStatus waits for nc to reach status (an event, not a sleep).
func waitStatus(t testing.TB, nc *nats.Conn, status nats.Status) error {
	t.Helper()
	ch := nc.StatusChanged(status)
	defer nc.RemoveStatusListener(ch)
	if nc.Status() == status {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("status %s not reached, still %s", status, nc.Status())
	}
}

func TestStreamMissingAnswers503(t *testing.T) {
	h := newHarness(t, nil)
	require.NoError(t, h.js.DeleteStream(t.Context(), streams.EventsStream))
	body := golden(t, "acs_credential_issued.json")
	a := h.post(t, signed(t, h.secrets[0], "msg_nostream", time.Now(), body), body)
	require.Equal(t, http.StatusServiceUnavailable, a.Status)
	require.NotEmpty(t, a.Header.Get("Retry-After"))
	require.EqualValues(t, 1, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeUnavailable, "reason", "stream"))
}

// gatedPublisher holds each publish until released, in front of the real
// JetStream publisher, so a test can have publishes in flight on purpose.
type gatedPublisher struct {
	js      jetstream.JetStream
	entered chan struct{}
	release chan struct{}
}

func (g *gatedPublisher) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.js.PublishMsg(ctx, m, opts...)
}

func TestOverloadAnswers429(t *testing.T) {
	var gate *gatedPublisher
	h := newHarness(t, func(o *events.Options) {
		gate = &gatedPublisher{js: o.Publisher.(jetstream.JetStream), entered: make(chan struct{}, 1), release: make(chan struct{})}
		o.Publisher, o.MaxInFlight, o.PublishTimeout = gate, 1, 10*time.Second
	})
	body := golden(t, "acs_credential_issued.json")

	var wg sync.WaitGroup
	var first answer
	var firstErr error
	slow := signed(t, h.secrets[0], "msg_slow", time.Now(), body)
	wg.Go(func() { first, firstErr = h.try(http.MethodPost, events.Path, slow, body) })
	<-gate.entered // one publish is in flight and holds the only slot
	require.EqualValues(t, 1, metric(t, h.reg, "cardwire_receiver_in_flight_publishes"))

	a := h.post(t, signed(t, h.secrets[0], "msg_busy", time.Now(), body), body)
	require.Equal(t, http.StatusTooManyRequests, a.Status)
	require.Equal(t, "overloaded", a.ErrType)
	require.NotEmpty(t, a.Header.Get("Retry-After"))

	close(gate.release)
	wg.Wait()
	require.NoError(t, firstErr)
	require.Equal(t, http.StatusNoContent, first.Status)
	require.EqualValues(t, 1, h.msgCount(t))
	require.EqualValues(t, 1, metric(t, h.reg, "cardwire_receiver_requests_total", "outcome", events.OutcomeOverloaded))
	require.EqualValues(t, 0, metric(t, h.reg, "cardwire_receiver_in_flight_publishes"))
}

func TestInFlightRequestIsAnsweredDuringShutdown(t *testing.T) {
	var gate *gatedPublisher
	h := newHarness(t, func(o *events.Options) {
		gate = &gatedPublisher{js: o.Publisher.(jetstream.JetStream), entered: make(chan struct{}, 1), release: make(chan struct{})}
		o.Publisher, o.PublishTimeout = gate, 10*time.Second
	})
	body := golden(t, "acs_credential_issued.json")

	var wg sync.WaitGroup
	var got answer
	var gotErr error
	hdr := signed(t, h.secrets[0], "msg_inflight", time.Now(), body)
	wg.Go(func() { got, gotErr = h.try(http.MethodPost, events.Path, hdr, body) })
	<-gate.entered

	shuttingDown := make(chan struct{})
	h.srv.Config.RegisterOnShutdown(func() { close(shuttingDown) })
	shutdownErr := make(chan error, 1)
	go func() { shutdownErr <- h.srv.Config.Shutdown(context.Background()) }()
	<-shuttingDown

	close(gate.release)
	wg.Wait()
	require.NoError(t, gotErr)
	require.Equal(t, http.StatusNoContent, got.Status)
	require.NoError(t, <-shutdownErr)
	require.EqualValues(t, 1, h.msgCount(t))
}
