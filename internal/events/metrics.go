package events

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Outcomes of one webhook request; label values of the request counter.
const (
	OutcomeAccepted         = "accepted"
	OutcomeDuplicate        = "duplicate"
	OutcomeQuarantined      = "quarantined"
	OutcomeInvalidSignature = "invalid_signature"
	OutcomeTooLarge         = "too_large"
	OutcomeUnavailable      = "unavailable"
	OutcomeOverloaded       = "overloaded"
	OutcomeBadRequest       = "bad_request"
	OutcomeNotFound         = "not_found"
	OutcomeMethodNotAllowed = "method_not_allowed"
)

type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	publishDuration prometheus.Histogram
	events          *prometheus.CounterVec
	workspaceEvents *prometheus.CounterVec
	inFlight        prometheus.Gauge
	requestsActive  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_receiver_requests_total",
			Help: "Webhook requests by outcome; reason says which check failed for invalid_signature, quarantined and unavailable.",
		}, []string{"outcome", "reason"}),
		requestDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cardwire_receiver_request_duration_seconds",
			Help:    "Time from request start to answer, by outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
		publishDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "cardwire_receiver_publish_duration_seconds",
			Help:    "Time from JetStream publish to PubAck (or failure).",
			Buckets: []float64{.0002, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_receiver_events_total",
			Help: "Events stored, by Seam event type (types outside Seam's spec count as other).",
		}, []string{"event_type"}),
		workspaceEvents: f.NewCounterVec(prometheus.CounterOpts{
			Name: "cardwire_receiver_workspace_events_total",
			Help: "Events stored, by the configured workspace whose secret verified them (its name, else its id; default with the single-workspace variables).",
		}, []string{"workspace"}),
		inFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "cardwire_receiver_in_flight_publishes",
			Help: "Publishes waiting for a PubAck right now.",
		}),
		requestsActive: f.NewGauge(prometheus.GaugeOpts{
			Name: "cardwire_receiver_requests_in_flight",
			Help: "Webhook requests being handled right now (reading, verifying or publishing).",
		}),
	}
	// Make every series exist from the start, so alerts and rate() see zeros.
	for _, o := range []string{OutcomeAccepted, OutcomeDuplicate, OutcomeTooLarge, OutcomeOverloaded, OutcomeBadRequest, OutcomeNotFound, OutcomeMethodNotAllowed} {
		m.requests.WithLabelValues(o, "")
	}
	for _, r := range []string{ReasonMissingHeaders, ReasonInvalidHeaders, ReasonTimestampTooOld, ReasonTimestampTooNew, ReasonNoMatchingSecret} {
		m.requests.WithLabelValues(OutcomeInvalidSignature, r)
	}
	for _, r := range []string{QuarantineNotJSON, QuarantineInvalidField, QuarantineMissingField, QuarantineInvalidSubject} {
		m.requests.WithLabelValues(OutcomeQuarantined, r)
	}
	for _, r := range []string{unavailableNATS, unavailableTimeout, unavailableStream} {
		m.requests.WithLabelValues(OutcomeUnavailable, r)
	}
	return m
}
