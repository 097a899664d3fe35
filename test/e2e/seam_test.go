package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
)

const simKey = "seam_test_e2e"

// seamStack is the whole system with the simulator as Seam: sim → signed
// webhooks → receiver → SEAM_EVENTS → worker (Seam client → sim) → outcomes.
type seamStack struct {
	nats     *natstest.Server
	sim      *seamsim.Sim
	simURL   string
	receiver *httptest.Server
	secret   string
	js       jetstream.JetStream
	outcomes *outcomes
}

type workerOpts struct {
	confirm, maxAge time.Duration
}

type seamWorker struct {
	api *httptest.Server
	reg *prometheus.Registry
	w   *worker.Worker
}

func newSeamStack(t *testing.T, strict bool) *seamStack {
	t.Helper()
	srv := natstest.RunJetStream(t)
	ctx := t.Context()
	_, js := natstest.Connect(t, srv.ClientURL())
	receiver, secret := startReceiver(t, srv)
	_, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)

	sim, err := seamsim.New(seamsim.Options{
		APIKey: simKey, WorkspaceID: ws, WebhookURL: receiver.URL + events.Path, WebhookSecret: secret,
		EncodeDelay: 50 * time.Millisecond, Strict: strict, Log: zerolog.Nop(),
	})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)

	s := &seamStack{nats: srv, sim: sim, simURL: simSrv.URL, receiver: receiver, secret: secret, js: js, outcomes: &outcomes{changed: make(chan struct{})}}
	s.outcomes.follow(t, js)
	return s
}

func (s *seamStack) worker(t *testing.T, o workerOpts) *seamWorker {
	t.Helper()
	ctx := t.Context()
	_, js := natstest.Connect(t, s.nats.ClientURL())
	owned, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	w := &seamWorker{reg: prometheus.NewRegistry()}
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer, co.RetryBase, co.MaxRetries = s.simURL, simKey, w.reg, 10*time.Millisecond, 1
	client, err := seam.New(co)
	require.NoError(t, err)
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer, wo.Seam = js, owned, w.reg, client
	wo.Concurrency, wo.HandleTimeout = 4, 5*time.Second
	if o.confirm > 0 {
		wo.Limits.ConfirmTimeout = o.confirm
	}
	if o.maxAge > 0 {
		wo.Limits.MaxAge = o.maxAge
	}
	w.w, err = worker.New(ctx, wo)
	require.NoError(t, err)
	require.NoError(t, w.w.Start(t.Context()))
	t.Cleanup(func() { _ = w.w.Stop(context.Background()) })
	w.api = httptest.NewServer(w.w.Handler())
	t.Cleanup(w.api.Close)
	return w
}

// start asks the worker to start an encode (no action_attempt_id).
func (w *seamWorker) start(t *testing.T, encoder, cred, idemKey string) (int, encoding.Record, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"workspace_id": ws, "acs_encoder_id": encoder, "acs_credential_id": cred})
	req, err := http.NewRequest(http.MethodPost, w.api.URL+"/v1/encodings", bytes.NewReader(body))
	require.NoError(t, err)
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var raw json.RawMessage
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&raw))
	var rec encoding.Record
	_ = json.Unmarshal(raw, &rec)
	return resp.StatusCode, rec, string(raw)
}

func (w *seamWorker) final(t *testing.T, id string) encoding.Record {
	t.Helper()
	resp, err := http.Get(w.api.URL + "/v1/encodings/" + id + "?wait=30s")
	require.NoError(t, err)
	defer resp.Body.Close()
	var rec encoding.Record
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
	require.True(t, rec.Status.Terminal(), "still %s after the wait", rec.Status)
	return rec
}

func (w *seamWorker) metric(name string, labels ...string) float64 {
	mfs, err := promtest.Gather(w.reg)
	if err != nil {
		return -1
	}
	return mfs.Value(name, labels...)
}

// outcomes collects ENCODING_EVENTS.
type outcomes struct {
	mu      sync.Mutex
	recs    []encoding.Record
	changed chan struct{}
}

func (o *outcomes) follow(t *testing.T, js jetstream.JetStream) {
	cons, err := js.OrderedConsumer(t.Context(), streams.OutcomesStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var rec encoding.Record
		_ = json.Unmarshal(m.Data(), &rec)
		o.mu.Lock()
		o.recs = append(o.recs, rec)
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	})
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
}

// wait returns the first outcome for id (any, if empty) that match accepts.
func (o *outcomes) wait(t *testing.T, id string, match func(encoding.Record) bool) encoding.Record {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		o.mu.Lock()
		for _, r := range o.recs {
			if (id == "" || r.EncodingID == id) && match(r) {
				o.mu.Unlock()
				return r
			}
		}
		ch := o.changed
		o.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no matching outcome for %s", id)
		}
	}
}

func TestStartWebhookIssuedWithCardNumber(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{})
	status, rec, body := w.start(t, uuid.NewString(), uuid.NewString(), "")
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, encoding.StatusPending, rec.Status)
	require.NotEmpty(t, rec.ActionAttemptID, "the attempt id from Seam is stored")

	got := w.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status)
	require.Equal(t, encoding.ResolvedByWebhook, got.ResolvedBy)
	require.NotEmpty(t, got.CardNumber)
	require.NotNil(t, got.IssuedAt)
	out := s.outcomes.wait(t, rec.EncodingID, func(r encoding.Record) bool { return r.Status == encoding.StatusIssued })
	require.NotEmpty(t, out.CardNumber, "the issued outcome carries the card number")
	require.Equal(t, 1, s.sim.Calls("/acs/encoders/encode_credential"))
	require.Zero(t, s.sim.Calls("/action_attempts/get"), "no polling on the happy path")
}

func TestSimulatedFailureSettlesAtTheDeadline(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: 300 * time.Millisecond})
	encoder := uuid.NewString()
	simFail(t, s, encoder, "no_credential_on_encoder")
	status, rec, body := w.start(t, encoder, uuid.NewString(), "")
	require.Equal(t, http.StatusAccepted, status, body)

	got := w.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusFailed, got.Status)
	require.Equal(t, "no_credential_on_encoder", got.Error.Type)
	require.Equal(t, encoding.ResolvedByReconcile, got.ResolvedBy)
	require.Equal(t, 1, s.sim.Calls("/action_attempts/get"), "exactly one question to Seam, at the deadline")
	require.Zero(t, s.sim.Delivered(), "Seam sends no webhook for a failure")
}

func TestDroppedWebhookIssuedByReconcile(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: 300 * time.Millisecond})
	s.sim.DropNextWebhook()
	_, rec, _ := w.start(t, uuid.NewString(), uuid.NewString(), "")
	got := w.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status)
	require.Equal(t, encoding.ResolvedByReconcile, got.ResolvedBy)
	require.NotEmpty(t, got.CardNumber, "from the attempt's result, no extra call")
	// Counted once the deadline's update returns, which may be after the
	// long poll saw the final revision.
	require.Eventually(t, func() bool { return w.metric("cardwire_worker_deadlines_total", "result", "issued") == 1 },
		10*time.Second, 5*time.Millisecond)
	require.Zero(t, s.sim.Calls("/acs/credentials/get"))
}

func TestPendingPastTheDeadlineIsExtendedThenExpired(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: 200 * time.Millisecond, maxAge: 900 * time.Millisecond})
	s.sim.HoldNextEncode()
	_, rec, _ := w.start(t, uuid.NewString(), uuid.NewString(), "")
	got := w.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusExpired, got.Status)
	require.Equal(t, encoding.ResolvedByDeadline, got.ResolvedBy)
	require.GreaterOrEqual(t, w.metric("cardwire_worker_deadlines_total", "result", "extended"), 1.0)
	require.GreaterOrEqual(t, s.sim.Calls("/action_attempts/get"), 2)
}

func TestSeamDownDuringStart(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: 200 * time.Millisecond, maxAge: 600 * time.Millisecond})
	s.sim.SetDown(true)
	status, rec, body := w.start(t, uuid.NewString(), uuid.NewString(), "")
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, encoding.StatusPending, rec.Status)
	require.Empty(t, rec.ActionAttemptID, "no answer: no attempt id, and the encode is not re-sent")
	s.sim.SetDown(false)
	got := w.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusExpired, got.Status, "the credential was never issued")
	require.Equal(t, 1, s.sim.Calls("/acs/encoders/encode_credential"))
}

func TestSeamDownDuringReconcile(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: 200 * time.Millisecond})
	s.sim.DropNextWebhook()
	_, rec, _ := w.start(t, uuid.NewString(), uuid.NewString(), "")
	s.sim.SetDown(true)
	require.Eventually(t, func() bool { return w.metric("cardwire_worker_deadlines_total", "result", "seam_error") >= 1 },
		10*time.Second, 10*time.Millisecond)
	s.sim.SetDown(false)
	got := w.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status)
	require.Equal(t, encoding.ResolvedByReconcile, got.ResolvedBy)
}

func TestSeamDownDuringEnrichment(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{})
	s.sim.DelayNextWebhook(200 * time.Millisecond)
	_, rec, _ := w.start(t, uuid.NewString(), uuid.NewString(), "")
	s.sim.SetDown(true) // the webhook still comes; the card-number fetch fails
	first := s.outcomes.wait(t, rec.EncodingID, func(r encoding.Record) bool { return r.Status == encoding.StatusIssued })
	require.Empty(t, first.CardNumber, "the outcome is not held up by Seam being down")
	s.sim.SetDown(false)
	later := s.outcomes.wait(t, rec.EncodingID, func(r encoding.Record) bool { return r.CardNumber != "" })
	require.Equal(t, encoding.StatusIssued, later.Status)
}

func TestIdempotencyKeyNeverStartsASecondEncode(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{})
	encoder, cred := uuid.NewString(), uuid.NewString()
	status1, rec1, _ := w.start(t, encoder, cred, "desk-7:guest-42")
	status2, rec2, _ := w.start(t, encoder, cred, "desk-7:guest-42")
	require.Equal(t, http.StatusAccepted, status1)
	require.Equal(t, http.StatusOK, status2)
	require.Equal(t, rec1.EncodingID, rec2.EncodingID)
	require.Equal(t, 1, s.sim.Calls("/acs/encoders/encode_credential"))
}

// A webhook after the deadline expired the encoding is late: the state
// stays expired.
func TestWebhookAfterExpiryIsLate(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: 200 * time.Millisecond, maxAge: 400 * time.Millisecond})
	s.sim.HoldNextEncode() // Seam keeps it pending: no webhook until we send one
	_, rec, _ := w.start(t, uuid.NewString(), uuid.NewString(), "")
	require.Equal(t, encoding.StatusExpired, w.final(t, rec.EncodingID).Status)

	status, err := sendIssued(s.receiver.URL, s.secret, rec.AcsCredentialID)
	require.NoError(t, err)
	require.Equal(t, http.StatusNoContent, status)
	require.Eventually(t, func() bool { return w.metric("cardwire_worker_events_total", "result", "late") == 1 },
		10*time.Second, 10*time.Millisecond)
	require.Equal(t, encoding.StatusExpired, w.final(t, rec.EncodingID).Status)
}

func TestSeamRejectsTheEncode(t *testing.T) {
	s := newSeamStack(t, true) // strict: unknown encoder → 404
	w := s.worker(t, workerOpts{})
	cred := uuid.NewString()
	s.sim.AddCredential(cred)
	status, rec, body := w.start(t, uuid.NewString(), cred, "")
	require.Equal(t, http.StatusNotFound, status, body)
	require.Contains(t, body, "acs_encoder_not_found")
	require.Equal(t, 1, s.sim.Calls("/acs/encoders/encode_credential"))
	_ = rec
	// The record exists and is failed with Seam's error.
	out := s.outcomes.wait(t, "", func(r encoding.Record) bool { return r.Status == encoding.StatusFailed })
	require.Equal(t, "acs_encoder_not_found", out.Error.Type)
}

func TestDeadlineSurvivesAWorkerRestart(t *testing.T) {
	s := newSeamStack(t, false)
	// The first worker stops long before the deadline (its timer is in
	// hand, delayed), so the second one handles it.
	first := s.worker(t, workerOpts{confirm: 2 * time.Second})
	s.sim.DropNextWebhook()
	_, rec, _ := first.start(t, uuid.NewString(), uuid.NewString(), "")
	first.api.Close()
	require.NoError(t, first.w.Stop(t.Context()))

	second := s.worker(t, workerOpts{confirm: 2 * time.Second})
	got := second.final(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status)
	require.Equal(t, encoding.ResolvedByReconcile, got.ResolvedBy)
	require.Equal(t, 1, s.sim.Calls("/action_attempts/get"), "the deadline fired once")
	fired := func() float64 {
		return max(first.metric("cardwire_worker_deadlines_total"), 0) + max(second.metric("cardwire_worker_deadlines_total"), 0)
	}
	require.Eventually(t, func() bool { return fired() == 1 }, 10*time.Second, 5*time.Millisecond,
		"one deadline handled across both workers (counted once its update returns)")
}

func simFail(t *testing.T, s *seamStack, encoder, code string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"acs_encoder_id": encoder, "error_code": code})
	req, _ := http.NewRequest(http.MethodPost, s.simURL+"/acs/encoders/simulate/next_credential_encode_will_fail", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+simKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}
