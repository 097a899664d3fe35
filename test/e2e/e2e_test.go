package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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
	"github.com/cardwire/cardwire/internal/eventstest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
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
	api := startWorker(tb, wjs, workerConfig{Owned: streams.DefaultWorkerOptions(), HandleTimeout: 5 * time.Second})

	// A downstream subscriber of the outcomes.
	_, sjs := natstest.Connect(tb, srv.ClientURL())
	outcomes, err := sjs.OrderedConsumer(ctx, streams.OutcomesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"encodings.*.issued"},
	})
	require.NoError(tb, err)
	return &stack{receiver: receiver, api: api, secret: secret, outcomes: outcomes}
}

// newClusterStack is newStack on a 3-node cluster as production runs it:
// SEAM_EVENTS, the bucket and the outcome stream with 3 replicas, and the
// receiver, the worker and the subscriber each on a different node.
func newClusterStack(tb testing.TB) *stack {
	tb.Helper()
	c := natstest.RunCluster(tb, 3)
	secret := newSecret()
	eo := streams.DefaultEventsStreamOptions()
	eo.Replicas = 3
	receiver := startReceiverOn(tb, connectNode(tb, c, 0, "receiver"), secret, eo)
	wo := streams.DefaultWorkerOptions()
	wo.Replicas = 3
	api := startWorker(tb, connectNode(tb, c, 1, "worker"), workerConfig{Owned: wo, HandleTimeout: 5 * time.Second})
	outcomes, err := connectNode(tb, c, 2, "subscriber").OrderedConsumer(context.Background(), streams.OutcomesStream,
		jetstream.OrderedConsumerConfig{FilterSubjects: []string{"encodings.*.issued"}})
	require.NoError(tb, err)
	return &stack{receiver: receiver, api: api, secret: secret, outcomes: outcomes}
}

// workerConfig is what a test chooses for a worker; everything else is the
// default.
type workerConfig struct {
	// Owned creates or updates what the worker owns, as WORKER_* and
	// ENCODINGS_REPLICAS do.
	Owned streams.WorkerOptions
	// HandleTimeout bounds one event (WORKER_HANDLE_TIMEOUT).
	HandleTimeout time.Duration
	// ConfirmTimeout is each encoding's first deadline; the default when 0.
	ConfirmTimeout time.Duration
}

// startWorker runs a track-only worker on js, wired by worker.New as
// cmd/worker wires it: what it owns is created or updated with c.Owned,
// then the intake, timers and outbox, and the API, served by the returned
// server.
func startWorker(tb testing.TB, js jetstream.JetStream, c workerConfig) *httptest.Server {
	tb.Helper()
	owned, err := streams.EnsureWorker(context.Background(), js, c.Owned)
	require.NoError(tb, err)
	o := worker.DefaultOptions()
	o.JS, o.Owned, o.Registerer, o.Log = js, owned, prometheus.NewRegistry(), zerolog.Nop()
	o.MaxDeliver, o.AckWait, o.HandleTimeout = c.Owned.MaxDeliver, c.Owned.AckWait, c.HandleTimeout
	if c.ConfirmTimeout > 0 {
		o.Limits.ConfirmTimeout = c.ConfirmTimeout
	}
	w, err := worker.New(context.Background(), o)
	require.NoError(tb, err)
	require.NoError(tb, w.Start(context.Background()))
	tb.Cleanup(func() { _ = w.Stop(context.Background()) })
	api := httptest.NewServer(w.Handler())
	tb.Cleanup(api.Close)
	return api
}

// startReceiver runs the webhook receiver on its own connection, creating
// SEAM_EVENTS, and returns its server and webhook secret.
func startReceiver(tb testing.TB, srv *natstest.Server) (*httptest.Server, string) {
	tb.Helper()
	_, js := natstest.Connect(tb, srv.ClientURL())
	secret := newSecret()
	return startReceiverOn(tb, js, secret, streams.DefaultEventsStreamOptions()), secret
}

// newSecret returns a random whsec_ webhook secret.
func newSecret() string {
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// startReceiverOn runs the webhook receiver on js with secret, creating or
// updating SEAM_EVENTS with so as cmd/webhook-receiver does, and returns its
// server.
func startReceiverOn(tb testing.TB, js jetstream.JetStream, secret string, so streams.EventsStreamOptions) *httptest.Server {
	tb.Helper()
	require.NoError(tb, streams.EnsureEventsStream(context.Background(), js, so))
	return eventstest.Serve(tb, eventstest.Verifier(tb, secret), js)
}

func (s *stack) register(tb testing.TB, cred string) string {
	tb.Helper()
	id, err := register(context.Background(), http.DefaultClient, s.api.URL, cred)
	require.NoError(tb, err)
	return id
}

// register registers a pending encoding of credential cred (track-only: the
// caller started it) with the worker API at apiURL and returns its id.
func register(ctx context.Context, client *http.Client, apiURL, cred string) (string, error) {
	body := fmt.Sprintf(`{"workspace_id":%q,"acs_encoder_id":%q,"acs_credential_id":%q,"action_attempt_id":%q}`,
		ws, uuid.NewString(), cred, uuid.NewString())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/v1/encodings", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("register %s: %s: %s", cred, resp.Status, msg)
	}
	var rec encoding.Record
	if err := json.NewDecoder(resp.Body).Decode(&rec); err != nil {
		return "", err
	}
	return rec.EncodingID, nil
}

// webhook signs an acs_credential.issued event with the svix library and
// posts it to the receiver, returning the status.
func (s *stack) webhook(cred string) (int, error) { return sendIssued(s.receiver.URL, s.secret, cred) }

// sendIssued signs an acs_credential.issued event with the svix library and
// posts it to the receiver at url, returning the status.
func sendIssued(url, secret, cred string) (int, error) {
	return newIssued(cred).post(context.Background(), http.DefaultClient, url, secret)
}

// delivery is one Seam webhook as Svix delivers it: every attempt carries
// the same id and body.
type delivery struct {
	id      string
	eventID string
	body    []byte
}

// newIssued returns a fresh acs_credential.issued webhook for cred.
func newIssued(cred string) delivery {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	eventID := uuid.NewString()
	body := fmt.Sprintf(`{"event_id":%q,"event_type":"acs_credential.issued","workspace_id":%q,"created_at":%q,"occurred_at":%q,"acs_credential_id":%q,"acs_system_id":%q}`,
		eventID, ws, now, now, cred, uuid.NewString())
	return delivery{id: "msg_" + uuid.NewString(), eventID: eventID, body: []byte(body)}
}

// post makes one delivery attempt to the receiver at url, signed now with
// the svix library, and returns the status.
func (d delivery) post(ctx context.Context, client *http.Client, url, secret string) (int, error) {
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		return 0, err
	}
	now := time.Now()
	sig, err := wh.Sign(d.id, now, d.body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+events.Path, bytes.NewReader(d.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("svix-id", d.id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
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
