package worker

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/cardwire/cardwire/internal/encoding"
)

type metrics struct {
	events            *prometheus.CounterVec
	resolved          *prometheus.CounterVec
	workspaceResolved *prometheus.CounterVec
	outcomes          *prometheus.CounterVec
	outboxErrors      prometheus.Counter
	apiUnauthorized   prometheus.Counter
	waitersRefused    prometheus.Counter
	apiRefused        prometheus.Counter
	resolveDuration   prometheus.Histogram
	eventLag          prometheus.Histogram
	handleDuration    *prometheus.HistogramVec
	api               *prometheus.CounterVec
	apiInFlight       prometheus.Gauge
	deadlines         *prometheus.CounterVec
	starts            *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_events_total",
			Help: "Seam events consumed, by event type and what they did (matched, early, unmatched, duplicate, stale, late, ignored, held, retried, dead_lettered).",
		}, []string{"event_type", "result"}),
		resolved: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_encodings_resolved_total",
			Help: "Encodings that reached a final status, by status and resolved_by.",
		}, []string{"status", "resolved_by"}),
		workspaceResolved: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_workspace_encodings_resolved_total",
			Help: "Encodings that reached a final status, by configured workspace (its name, else its id; default without WORKSPACES_FILE, other for one no longer configured) and status.",
		}, []string{"workspace", "status"}),
		outcomes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_outcomes_published_total",
			Help: "Record revisions the outbox published on ENCODING_EVENTS, by status (repeats the stream dropped as duplicates not counted).",
		}, []string{"status"}),
		outboxErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "cardwire_worker_outbox_errors_total",
			Help: "Outcome publishes that failed and were retried by the outbox.",
		}),
		resolveDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "cardwire_worker_resolve_duration_seconds",
			Help:    "Time from requested_at to the final status.",
			Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 900},
		}),
		eventLag: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "cardwire_worker_event_lag_seconds",
			Help:    "Time from a Seam event's occurred_at to the state change it caused.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200},
		}),
		handleDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cardwire_worker_handle_duration_seconds",
			Help:    "Time to handle one consumed event, by result.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}, []string{"result"}),
		api: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_api_requests_total",
			Help: "Worker API requests by route and status code.",
		}, []string{"route", "code"}),
		deadlines: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_deadlines_total",
			Help: "Deadlines reached, by what they did (issued and failed come from asking Seam: issued means a webhook was missed or late).",
		}, []string{"result"}),
		starts: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_worker_encodes_started_total",
			Help: "Encodes started through Seam, by result (started, rejected, unknown: no answer, the deadline settles it).",
		}, []string{"result"}),
		apiInFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "cardwire_worker_api_in_flight",
			Help: "Worker API requests being served, long polls and event streams included.",
		}),
	}
	m.apiUnauthorized = f.NewCounter(prometheus.CounterOpts{
		Name: "cardwire_worker_api_unauthorized_total",
		Help: "Worker API requests refused for a missing or wrong bearer token.",
	})
	m.waitersRefused = f.NewCounter(prometheus.CounterOpts{
		Name: "cardwire_worker_api_waiters_refused_total",
		Help: "Long polls and event streams refused (429) because WORKER_API_MAX_WAITERS were open.",
	})
	m.apiRefused = f.NewCounter(prometheus.CounterOpts{
		Name: "cardwire_worker_api_refused_total",
		Help: "API requests refused (429) because WORKER_API_MAX_IN_FLIGHT were being served.",
	})
	for _, r := range encoding.Results {
		m.events.WithLabelValues("other", string(r))
	}
	return m
}

// eventTypeLabel keeps the events counter bounded: the types the worker
// consumes, and "other".
func eventTypeLabel(t string) string {
	switch t {
	case "acs_credential.issued", "acs_credential.reissued", "acs_credential.deleted", "acs_credential.invalidated",
		"access_method.issued", "access_method.reissued", "access_method.deleted", "access_method.revoked",
		"access_method.card_encoding_required", "acs_encoder.removed":
		return t
	}
	return "other"
}
