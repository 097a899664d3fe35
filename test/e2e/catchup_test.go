package e2e_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/eventstest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
)

// An encode whose webhook never reached the receiver is settled by the
// catch-up finding its event in Seam's log, stored once; an event that
// came by webhook is found again as already stored.
func TestCatchupSettlesWhatTheWebhooksMissed(t *testing.T) {
	s := newSeamStack(t, false)
	w := s.worker(t, workerOpts{confirm: time.Hour, maxAge: 2 * time.Hour}) // no deadline in the way
	ctx := t.Context()
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer = s.simURL, simKey, prometheus.NewRegistry()
	client, err := seam.New(co)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	o := catchup.DefaultOptions()
	o.Publisher, o.Registerer, o.Holder = s.js, reg, "e2e"
	o.Workspaces = func() []catchup.Workspace { return []catchup.Workspace{{ID: ws, Label: "default", Seam: client}} }
	cu, err := catchup.New(o)
	require.NoError(t, err)
	window := func() catchup.Report {
		rep, err := cu.Window(ctx, o.Workspaces()[0], time.Now().Add(-time.Minute), time.Now())
		require.NoError(t, err)
		return rep
	}

	// By webhook: settled; the catch-up finds it stored.
	status, byHook, body := w.start(t, uuid.NewString(), uuid.NewString(), "")
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, encoding.StatusIssued, w.final(t, byHook.EncodingID).Status)
	require.Equal(t, catchup.Report{Found: 1, AlreadyStored: 1}, window())

	// Missed: the webhook is dropped (the receiver was down); only the
	// catch-up stores the event, and the worker settles the encoding.
	s.sim.DropNextWebhook()
	status, missed, body := w.start(t, uuid.NewString(), uuid.NewString(), "")
	require.Equal(t, http.StatusAccepted, status, body)
	// The simulator logs the event when the encode resolves and drops its
	// webhook; it signals neither, so its log is watched.
	require.Eventually(t, func() bool { return len(s.sim.Events()) == 2 }, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, catchup.Report{Found: 2, Missed: 1, AlreadyStored: 1}, window())
	got := w.final(t, missed.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status)
	require.Equal(t, encoding.ResolvedByWebhook, got.ResolvedBy, "settled by its event, as if the webhook had come")

	st, err := s.js.Stream(ctx, streams.EventsStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 2, info.State.Msgs, "each event stored once")
	mfs, err := promtest.Gather(reg)
	require.NoError(t, err)
	require.Equal(t, 1.0, mfs.Value("cardwire_catchup_events_total", "result", "missed"))
}

// During a secret rotation Seam sends every event through two webhooks,
// each with its own webhook id and secret: the event is stored once, and
// its encoding settles once.
func TestRotationsSecondWebhookStoresEachEventOnce(t *testing.T) {
	ctx := t.Context()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	var receiver atomic.Value // http.Handler, once its secrets are known
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		receiver.Load().(http.Handler).ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	oldSecret := newSecret()
	sim, err := seamsim.New(seamsim.Options{APIKey: simKey, WorkspaceID: ws, WebhookURL: front.URL + events.Path, WebhookSecret: oldSecret,
		EncodeDelay: 20 * time.Millisecond, Log: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer = simSrv.URL, simKey, prometheus.NewRegistry()
	client, err := seam.New(co)
	require.NoError(t, err)
	// The rotation's first step: a second webhook to the same endpoint.
	second, err := client.CreateWebhook(ctx, front.URL+events.Path, nil)
	require.NoError(t, err)
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	receiver.Store(eventstest.Routes(t, eventstest.Verifier(t, oldSecret, second.Secret), js, nil))

	s := &seamStack{nats: srv, sim: sim, simURL: simSrv.URL, js: js, outcomes: &outcomes{changed: make(chan struct{})}}
	w := s.worker(t, workerOpts{confirm: time.Hour, maxAge: 2 * time.Hour})
	s.outcomes.follow(t, js)
	status, rec, body := w.start(t, uuid.NewString(), uuid.NewString(), "")
	require.Equal(t, http.StatusAccepted, status, body)
	require.Equal(t, encoding.StatusIssued, w.final(t, rec.EncodingID).Status)
	// Both deliveries answered 2xx (the second as a duplicate).
	require.Eventually(t, func() bool { return sim.Delivered() == 2 }, 10*time.Second, 5*time.Millisecond)

	st, err := js.Stream(ctx, streams.EventsStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, info.State.Msgs, "one event, two webhooks")
	// The outcome goes out after the record is stored, which the long
	// poll may answer first.
	s.outcomes.wait(t, rec.EncodingID, func(r encoding.Record) bool { return r.Status == encoding.StatusIssued })
	s.outcomes.mu.Lock()
	defer s.outcomes.mu.Unlock()
	issued := 0
	for _, r := range s.outcomes.recs {
		if r.EncodingID == rec.EncodingID && r.Status == encoding.StatusIssued {
			issued++
		}
	}
	require.Equal(t, 1, issued, "settled once")
}
