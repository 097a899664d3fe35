package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

const ws = "6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11"

// stack is a receiver and a worker on one embedded server, each with its
// own connection, as two processes would be.
type stack struct {
	receiver *httptest.Server
	api      *httptest.Server
	secret   string
	outcomes jetstream.Consumer
}

func newStack(tb testing.TB) *stack {
	tb.Helper()
	srv := natstest.RunJetStream(tb)
	ctx := context.Background()

	receiver, secret := startReceiver(tb, srv)

	// The worker.
	_, wjs := natstest.Connect(tb, srv.ClientURL())
	owned, err := streams.EnsureWorker(ctx, wjs, streams.DefaultWorkerOptions())
	require.NoError(tb, err)
	bucket, cons := owned.Bucket, owned.Events
	so := encoding.DefaultServiceOptions()
	so.Bucket, so.Publisher, so.Registerer, so.Log = bucket, wjs, prometheus.NewRegistry(), zerolog.Nop()
	svc, err := encoding.NewService(so)
	require.NoError(tb, err)
	proc, err := encoding.NewProcessor(encoding.ProcessorOptions{
		Service: svc, Consumer: cons, Publisher: wjs, MaxDeliver: 8, Concurrency: 8, HandleTimeout: 5 * time.Second,
	})
	require.NoError(tb, err)
	require.NoError(tb, proc.Start())
	tb.Cleanup(func() { _ = proc.Stop(context.Background()) })
	h, err := encoding.Routes(encoding.APIOptions{Service: svc, Log: zerolog.Nop(), MaxWait: time.Minute, MaxStream: time.Minute})
	require.NoError(tb, err)
	api := httptest.NewServer(h)
	tb.Cleanup(api.Close)

	// A downstream subscriber of the outcomes.
	_, sjs := natstest.Connect(tb, srv.ClientURL())
	outcomes, err := sjs.OrderedConsumer(ctx, streams.OutcomesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"encodings.*.issued"},
	})
	require.NoError(tb, err)
	return &stack{receiver: receiver, api: api, secret: secret, outcomes: outcomes}
}

// startReceiver runs the webhook receiver on its own connection, creating
// SEAM_EVENTS, and returns its server and webhook secret.
func startReceiver(tb testing.TB, srv *natstest.Server) (*httptest.Server, string) {
	tb.Helper()
	_, js := natstest.Connect(tb, srv.ClientURL())
	require.NoError(tb, streams.EnsureEventsStream(context.Background(), js, streams.DefaultEventsStreamOptions()))
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	verifier, err := events.NewVerifier([]string{secret}, 5*time.Minute)
	require.NoError(tb, err)
	ro := events.DefaultOptions()
	ro.Verifier, ro.Publisher, ro.Registerer = verifier, js, prometheus.NewRegistry()
	rc, err := events.NewReceiver(ro)
	require.NoError(tb, err)
	receiver := httptest.NewServer(rc.Routes())
	tb.Cleanup(receiver.Close)
	return receiver, secret
}

func (s *stack) register(tb testing.TB, cred string) string {
	tb.Helper()
	body := fmt.Sprintf(`{"workspace_id":%q,"acs_encoder_id":%q,"acs_credential_id":%q,"action_attempt_id":%q}`,
		ws, uuid.NewString(), cred, uuid.NewString())
	resp, err := http.Post(s.api.URL+"/v1/encodings", "application/json", bytes.NewReader([]byte(body)))
	require.NoError(tb, err)
	defer resp.Body.Close()
	require.Equal(tb, http.StatusCreated, resp.StatusCode)
	var rec encoding.Record
	require.NoError(tb, json.NewDecoder(resp.Body).Decode(&rec))
	return rec.EncodingID
}

// webhook signs an acs_credential.issued event with the svix library and
// posts it to the receiver, returning the status.
func (s *stack) webhook(cred string) (int, error) { return sendIssued(s.receiver.URL, s.secret, cred) }

// sendIssued signs an acs_credential.issued event with the svix library and
// posts it to the receiver at url, returning the status.
func sendIssued(url, secret, cred string) (int, error) {
	now := time.Now()
	body := fmt.Sprintf(`{"event_id":%q,"event_type":"acs_credential.issued","workspace_id":%q,"created_at":%q,"occurred_at":%q,"acs_credential_id":%q,"acs_system_id":%q}`,
		uuid.NewString(), ws, now.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), cred, uuid.NewString())
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return 0, err
	}
	id := "msg_" + uuid.NewString()
	sig, err := wh.Sign(id, now, []byte(body))
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, url+events.Path, bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func TestSignedWebhookInOutcomeOut(t *testing.T) {
	s := newStack(t)
	cred := uuid.NewString()
	id := s.register(t, cred)

	status, err := s.webhook(cred)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, status)

	msg, err := s.outcomes.Next(jetstream.FetchMaxWait(15 * time.Second))
	require.NoError(t, err)
	var rec encoding.Record
	require.NoError(t, json.Unmarshal(msg.Data(), &rec))
	require.Equal(t, "encodings."+ws+".issued", msg.Subject())
	require.Equal(t, id, rec.EncodingID)
	require.Equal(t, cred, rec.AcsCredentialID)
	require.Equal(t, encoding.StatusIssued, rec.Status)
	require.Equal(t, encoding.ResolvedByWebhook, rec.ResolvedBy)
}
