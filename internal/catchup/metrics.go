package catchup

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results: of an event listed (events_total) and of a workspace's run
// (runs_total).
const (
	resultMissed        = "missed"
	resultAlreadyStored = "already_stored"
	resultSkipped       = "skipped"
	resultOK            = "ok"
	resultError         = "error"
	resultRefused       = "refused"
)

type metrics struct {
	events     *prometheus.CounterVec
	runs       *prometheus.CounterVec
	checkpoint *prometheus.GaugeVec
	leaseHeld  prometheus.Gauge
	tooDense   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_catchup_events_total",
			Help: "Events the catch-up listed from Seam, by workspace and result: missed (not stored: the webhooks had missed it; now stored), already_stored, skipped (not storable).",
		}, []string{"workspace", "result"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_catchup_runs_total",
			Help: "Catch-up runs of a workspace by result: ok, error (Seam or NATS; the window is covered again next interval), refused (Seam refused the workspace's credentials).",
		}, []string{"workspace", "result"}),
		checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cardwire_catchup_checkpoint_timestamp_seconds",
			Help: "The time up to which a workspace's events are fully caught up (as read from the CATCHUP bucket by every worker).",
		}, []string{"workspace"}),
		leaseHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cardwire_catchup_lease_held",
			Help: "1 on the worker that runs the catch-up now.",
		}),
		tooDense: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cardwire_catchup_windows_too_dense_total",
			Help: "Catch-up windows still full at their narrowest (more events than the page limit in 2 ms): some events may not have been listed.",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.runs, m.checkpoint, m.leaseHeld, m.tooDense} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
