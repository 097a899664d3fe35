package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/admin"
	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/eventstest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
)

// outageStack is make run's stack in one process, single-workspace: NATS,
// a receiver that a down file stops as scripts/run.sh does, the simulator
// and a worker with its catch-up.
type outageStack struct {
	natsURL, api, metrics, sim, receiverAdmin, downFile string
}

func newOutageStack(t *testing.T) *outageStack {
	t.Helper()
	ctx := t.Context()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	s := &outageStack{natsURL: srv.ClientURL(), downFile: filepath.Join(t.TempDir(), "receiver.down")}

	// The receiver, and what scripts/run.sh does: while the down file
	// exists, it is down (webhooks fail, its admin port does not answer).
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	secret, err := newWebhookSecret()
	require.NoError(t, err)
	routes := eventstest.Routes(t, eventstest.Verifier(t, secret), js, nil)
	var down atomic.Bool
	downable := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if down.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	receiver := httptest.NewServer(downable(routes))
	t.Cleanup(receiver.Close)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	receiverAdmin := httptest.NewServer(downable(ok))
	t.Cleanup(receiverAdmin.Close)
	s.receiverAdmin = receiverAdmin.URL
	supervise, stopSupervising := context.WithCancel(context.Background())
	supervised := make(chan struct{})
	go func() {
		defer close(supervised)
		for supervise.Err() == nil {
			_, err := os.Stat(s.downFile)
			down.Store(err == nil)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stopSupervising(); <-supervised })

	sim, err := seamsim.New(seamsim.Options{
		APIKey: "seam_test_dev", WorkspaceID: defaultWorkspaceID, WebhookURL: receiver.URL + events.Path, WebhookSecret: secret,
		EncodeDelay: 100 * time.Millisecond, RetryDelays: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, Log: zerolog.Nop(),
	})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)
	s.sim = simSrv.URL

	// The worker, wired as cmd/worker wires it, with its catch-up on a
	// short interval and its metrics on the admin handler.
	reg := prometheus.NewRegistry()
	owned, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	bucket, err := streams.EnsureCatchup(ctx, js, 1)
	require.NoError(t, err)
	co := seam.DefaultOptions()
	co.BaseURL, co.APIKey, co.Registerer = simSrv.URL, "seam_test_dev", reg
	client, err := seam.New(co)
	require.NoError(t, err)
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer, wo.Seam = js, owned, reg, client
	wo.Limits.DefaultWorkspaceID = defaultWorkspaceID
	w, err := worker.New(ctx, wo)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	api := httptest.NewServer(w.Handler())
	t.Cleanup(api.Close)
	s.api = api.URL

	cuo := catchup.DefaultOptions()
	cuo.Publisher, cuo.Bucket, cuo.Registerer, cuo.Holder, cuo.Interval = js, bucket, reg, "test", time.Second
	cuo.Workspaces = func() []catchup.Workspace {
		return []catchup.Workspace{{ID: defaultWorkspaceID, Label: "default", Seam: client}}
	}
	cu, err := catchup.New(cuo)
	require.NoError(t, err)
	runs, stopRuns := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); cu.Run(runs) }()
	t.Cleanup(func() { stopRuns(); <-ran })

	adminHandler, err := admin.Handler(admin.Options{Gatherer: reg, CheckTimeout: time.Second, Log: zerolog.Nop()})
	require.NoError(t, err)
	adm := httptest.NewServer(adminHandler)
	t.Cleanup(adm.Close)
	s.metrics = adm.URL + "/metrics"
	return s
}

func (s *outageStack) args(extra ...string) []string {
	return append([]string{"demo-outage", "-api", s.api, "-metrics", s.metrics, "-sim", s.sim,
		"-receiver-admin", s.receiverAdmin, "-down-file", s.downFile, "-retries", "300ms", "-wait", "20s"}, extra...)
}

// The demo against a real receiver, simulator and worker: the event whose
// webhook failed while the receiver was down is stored once, by the
// catch-up, and settles the encoding; the receiver is up again after.
func TestDemoOutageCatchupSettlesTheMissedEvent(t *testing.T) {
	s := newOutageStack(t)
	env := envOf(map[string]string{"NATS_URL": s.natsURL})
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), s.args(), env, &out), out.String())

	got := out.String()
	for _, want := range []string{
		"receiver stopped", "its webhook fails", "receiver started",
		`"status": "issued"`, `"resolved_by": "webhook"`,
		`cardwire_catchup_events_total{result="missed",workspace="default"} 0 → 1`,
		"stored by the catch-up (no Seam-Webhook-Id header)",
	} {
		require.Contains(t, got, want)
	}
	require.NoFileExists(t, s.downFile, "the receiver is left running")

	// Again, from a catch-up that has already counted one.
	out.Reset()
	require.NoError(t, run(t.Context(), s.args(), env, &out), out.String())
	require.Contains(t, out.String(), `{result="missed",workspace="default"} 1 → 2`)
}

func TestDemoOutageFailures(t *testing.T) {
	s := newOutageStack(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	alwaysUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(alwaysUp.Close)
	testCases := []struct {
		Name    string
		Args    []string
		WantErr string
	}{
		{"no worker", s.args("-metrics", closed.URL+"/metrics"), "is make run up?"},
		// Nothing stops the receiver on this port: the demo says what to
		// start, and removes its file.
		{"no supervisor", s.args("-receiver-admin", alwaysUp.URL, "-wait", "300ms"), "the receiver did not stop within 300ms"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), c.Args, envOf(map[string]string{"NATS_URL": s.natsURL}), &out)
			require.ErrorContains(t, err, c.WantErr)
			require.NoFileExists(t, s.downFile)
		})
	}
}

func TestMissedSeries(t *testing.T) {
	text := `# HELP cardwire_catchup_events_total Events …
# TYPE cardwire_catchup_events_total counter
cardwire_catchup_events_total{result="already_stored",workspace="Hotel Aurora"} 7
cardwire_catchup_events_total{result="missed",workspace="Hotel Aurora"} 2
cardwire_catchup_events_total{result="missed",workspace="Hotel Borealis"} 1e+00
cardwire_catchup_runs_total{result="missed",workspace="x"} 9
`
	got, err := missedSeries(strings.NewReader(text))
	require.NoError(t, err)
	require.Equal(t, map[string]float64{`result="missed",workspace="Hotel Aurora"`: 2, `result="missed",workspace="Hotel Borealis"`: 1}, got)
	_, err = missedSeries(strings.NewReader(`cardwire_catchup_events_total{result="missed"} x` + "\n"))
	require.Error(t, err)
}
