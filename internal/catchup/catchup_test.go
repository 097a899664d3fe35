package catchup_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
)

const (
	ws     = "ws-catchup"
	simKey = "seam_test_catchup"
)

// fixture is a JetStream server with SEAM_EVENTS and the CATCHUP bucket,
// and a simulated Seam whose webhooks all fail (the receiver is down), so
// its events are only in its log.
type fixture struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	stream   jetstream.Stream
	sim      *seamsim.Sim
	client   *seam.Client
	attempts chan struct{} // one per webhook the sim tried to deliver
}

func newFixture(t *testing.T) *fixture { return newFixtureAt(t, nil) }

// newFixtureAt is newFixture with the simulator's clock (nil: time.Now).
func newFixtureAt(t *testing.T, now func() time.Time) *fixture {
	t.Helper()
	ctx := t.Context()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	kv, err := streams.EnsureCatchup(ctx, js, 1)
	require.NoError(t, err)
	st, err := js.Stream(ctx, streams.EventsStream)
	require.NoError(t, err)
	f := &fixture{js: js, kv: kv, stream: st, attempts: make(chan struct{}, 100)}
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		f.attempts <- struct{}{}
	}))
	t.Cleanup(down.Close)
	f.sim, err = seamsim.New(seamsim.Options{APIKey: simKey, WorkspaceID: ws, WebhookURL: down.URL, WebhookSecret: "whsec_" + "QUJDREVGR0hJSktMTU5PUA==",
		EncodeDelay: time.Millisecond, RetryDelays: []time.Duration{}, Log: zerolog.Nop(), Now: now})
	require.NoError(t, err)
	t.Cleanup(f.sim.Close)
	simSrv := httptest.NewServer(f.sim.Handler())
	t.Cleanup(simSrv.Close)
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer, co.MaxRetries, co.MaxRPS, co.Burst = simSrv.URL, simKey, prometheus.NewRegistry(), 0, 1000, 1000
	f.client, err = seam.New(co)
	require.NoError(t, err)
	return f
}

// encode makes n cards issue at Seam while the receiver is down, one
// after the other, waiting each time until Seam has tried (and failed) to
// deliver the webhook.
func (f *fixture) encode(t *testing.T, n int) {
	t.Helper()
	for range n {
		_, err := f.client.EncodeCredential(t.Context(), seam.EncodeRequest{AcsEncoderID: uuid.NewString(), AcsCredentialID: uuid.NewString()})
		require.NoError(t, err)
		select {
		case <-f.attempts:
		case <-time.After(10 * time.Second):
			t.Fatal("the simulator did not try to deliver a webhook")
		}
	}
}

func (f *fixture) catchup(t *testing.T, configure func(*catchup.Options)) (*catchup.Catchup, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := catchup.DefaultOptions()
	o.Publisher, o.Bucket, o.Registerer, o.Holder = f.js, f.kv, reg, uuid.NewString()
	o.Workspaces = func() []catchup.Workspace { return []catchup.Workspace{{ID: ws, Label: "Hotel", Seam: f.client}} }
	if configure != nil {
		configure(&o)
	}
	c, err := catchup.New(o)
	require.NoError(t, err)
	return c, reg
}

func (f *fixture) stored(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	info, err := f.stream.Info(t.Context())
	require.NoError(t, err)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := f.stream.GetMsg(t.Context(), seq)
		require.NoError(t, err)
		out = append(out, m)
	}
	return out
}

func metric(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := promtest.Gather(reg)
	require.NoError(t, err)
	return mfs.Value(name, labels...)
}

// Events Seam made while the receiver was down are stored once, as the
// receiver would have stored them; found again, they are duplicates.
func TestCatchupStoresMissedEventsOnce(t *testing.T) {
	f := newFixture(t)
	f.encode(t, 3)
	c, reg := f.catchup(t, nil)
	c.RunOnce(t.Context())

	msgs := f.stored(t)
	require.Len(t, msgs, 3)
	logged := map[string]json.RawMessage{}
	for _, raw := range f.sim.Events() {
		var ev struct {
			EventID string `json:"event_id"`
		}
		require.NoError(t, json.Unmarshal(raw, &ev))
		logged[ev.EventID] = raw
	}
	for _, m := range msgs {
		id := m.Header.Get(streams.HeaderEventID)
		require.Equal(t, "seam.events."+ws+".acs_credential.issued", m.Subject)
		require.Equal(t, streams.EventMsgIDPrefix+id, m.Header.Get(jetstream.MsgIDHeader))
		require.Equal(t, "acs_credential.issued", m.Header.Get(streams.HeaderEventType))
		require.Equal(t, ws, m.Header.Get(streams.HeaderWorkspaceID))
		require.JSONEq(t, string(logged[id]), string(m.Data), "the event as Seam listed it")
	}
	require.Equal(t, 3.0, metric(t, reg, "cardwire_catchup_events_total", "result", "missed"))

	c.RunOnce(t.Context())
	require.Len(t, f.stored(t), 3, "found again: duplicates")
	require.Equal(t, 3.0, metric(t, reg, "cardwire_catchup_events_total", "result", "already_stored"))
	require.Equal(t, 2.0, metric(t, reg, "cardwire_catchup_runs_total", "workspace", "Hotel", "result", "ok"))
}

// More events than one page: the window is split until each half fits.
func TestCatchupSplitsFullWindows(t *testing.T) {
	f := newFixture(t)
	f.encode(t, 7)
	c, reg := f.catchup(t, func(o *catchup.Options) { o.PageLimit = 2 })
	rep, err := c.Window(t.Context(), catchup.Workspace{ID: ws, Label: "Hotel", Seam: f.client}, time.Now().Add(-time.Minute), time.Now())
	require.NoError(t, err)
	require.Equal(t, 7, rep.Missed)
	require.Len(t, f.stored(t), 7)
	require.Zero(t, metric(t, reg, "cardwire_catchup_windows_too_dense_total"))
}

// More events in one millisecond than one page: no narrower window can
// split them, so the catch-up pages with Seam's offset.
func TestCatchupPagesADenseMillisecond(t *testing.T) {
	at := time.Now()
	f := newFixtureAt(t, func() time.Time { return at })
	f.encode(t, 7)
	c, reg := f.catchup(t, func(o *catchup.Options) { o.PageLimit = 2 })
	rep, err := c.Window(t.Context(), catchup.Workspace{ID: ws, Label: "Hotel", Seam: f.client}, at.Add(-time.Minute), at.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, 7, rep.Missed)
	require.Len(t, f.stored(t), 7)
	require.Zero(t, metric(t, reg, "cardwire_catchup_windows_too_dense_total"))
}

// The checkpoint survives a restart: the next process starts from it (less
// the overlap), not from the lookback.
func TestCatchupResumesFromItsCheckpoint(t *testing.T) {
	f := newFixture(t)
	f.encode(t, 2)
	first, _ := f.catchup(t, nil)
	first.RunOnce(t.Context())
	f.encode(t, 1)

	// No overlap: only what came after the checkpoint is listed.
	again, reg := f.catchup(t, func(o *catchup.Options) { o.Overlap = 0 })
	again.RunOnce(t.Context())
	require.Equal(t, 1.0, metric(t, reg, "cardwire_catchup_events_total", "result", "missed"))
	require.Less(t, metric(t, reg, "cardwire_catchup_events_total", "result", "already_stored"), 2.0, "the first two were not both listed again")
	require.Len(t, f.stored(t), 3)
}

// Seam refusing, rate limiting or failing: the run fails, the checkpoint
// stays, the next run covers the window.
func TestCatchupSurvivesSeamErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		result string
	}{
		{"rate limited", http.StatusTooManyRequests, "error"},
		{"unavailable", http.StatusServiceUnavailable, "error"},
		{"credentials refused", http.StatusUnauthorized, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.encode(t, 1)
			c, reg := f.catchup(t, nil)
			f.sim.FailNext(seamsim.PathListEvents, tc.status, 0)
			c.RunOnce(t.Context())
			require.Empty(t, f.stored(t))
			require.Equal(t, 1.0, metric(t, reg, "cardwire_catchup_runs_total", "result", tc.result))
			_, err := f.kv.Get(t.Context(), "checkpoint."+ws)
			require.ErrorIs(t, err, jetstream.ErrKeyNotFound, "no checkpoint past a failed run")

			c.RunOnce(t.Context())
			require.Len(t, f.stored(t), 1, "the next run covers the window")
			require.Equal(t, 1.0, metric(t, reg, "cardwire_catchup_runs_total", "result", "ok"))
		})
	}
}

// One holder at a time; the lease moves when the holder dies (stops
// renewing), and at once when it gives it up.
func TestCatchupLease(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	short := func(o *catchup.Options) { o.Interval = time.Second } // lease TTL 3 s, the least a key TTL may be
	a, _ := f.catchup(t, short)
	b, _ := f.catchup(t, short)
	held, err := a.Hold(ctx)
	require.NoError(t, err)
	require.True(t, held)
	for range 3 {
		held, err = b.Hold(ctx)
		require.NoError(t, err)
		require.False(t, held, "never two holders")
		held, err = a.Hold(ctx)
		require.NoError(t, err)
		require.True(t, held, "the holder renews")
	}

	// a dies: it renews no more. The lease expires; b takes it.
	w, err := f.kv.Watch(ctx, "lease", jetstream.UpdatesOnly())
	require.NoError(t, err)
	defer func() { _ = w.Stop() }()
	select {
	case e := <-w.Updates():
		require.NotNil(t, e)
		require.NotEqual(t, jetstream.KeyValuePut, e.Operation(), "the lease expired")
	case <-time.After(10 * time.Second):
		t.Fatal("the lease did not expire")
	}
	held, err = b.Hold(ctx)
	require.NoError(t, err)
	require.True(t, held, "taken over")
	held, err = a.Hold(ctx)
	require.NoError(t, err)
	require.False(t, held, "the old holder knows it lost it")

	// b stops cleanly: a takes over at once.
	b.Release()
	held, err = a.Hold(ctx)
	require.NoError(t, err)
	require.True(t, held)
}
