package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardwire/cardwire/internal/parking"
)

// registerFeedGauges registers the gauges read from the process's feed:
// the pending encodings (the same on every replica: the pending index is
// shared) and the open waits of this process.
func registerFeedGauges(f *feed, reg prometheus.Registerer) error {
	return errors.Join(
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cardwire_worker_encodings_pending",
			Help: "Encodings pending right now, from the pending index in the ENCODINGS bucket.",
		}, func() float64 { return float64(f.pendingCount()) })),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cardwire_worker_api_waiters",
			Help: "Long polls and event streams open on this worker (at most WORKER_API_MAX_WAITERS).",
		}, func() float64 { return float64(f.openWaiters()) })),
	)
}

// consumerCollector reports the consumer's backlog from consumer info at
// scrape time.
type consumerCollector struct {
	cons                 jetstream.Consumer
	pending, ackPending  *prometheus.Desc
	redelivered, waiting *prometheus.Desc
}

// registerConsumerMetrics registers cardwire_worker_consumer_* gauges that
// read the consumer's info at each scrape.
func registerConsumerMetrics(cons jetstream.Consumer, reg prometheus.Registerer) error {
	return reg.Register(&consumerCollector{
		cons:        cons,
		pending:     prometheus.NewDesc("cardwire_worker_consumer_pending", "Events in SEAM_EVENTS not yet delivered to the encoding-worker consumer.", nil, nil),
		ackPending:  prometheus.NewDesc("cardwire_worker_consumer_ack_pending", "Events delivered and not yet acknowledged.", nil, nil),
		redelivered: prometheus.NewDesc("cardwire_worker_consumer_redelivered", "Events delivered more than once and not yet acknowledged.", nil, nil),
		waiting:     prometheus.NewDesc("cardwire_worker_consumer_waiting_pulls", "Pull requests waiting on the consumer.", nil, nil),
	})
}

func (c *consumerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	ch <- c.waiting
}

func (c *consumerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.cons.Info(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pending, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending))
	ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending))
	ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered))
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(info.NumWaiting))
}

// registerParkingGauge reports whether long polls are parked: lot is nil
// where parking is not built.
func registerParkingGauge(lot *parking.Lot, reg prometheus.Registerer) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cardwire_worker_api_parking",
		Help: "1 while long polls over HTTP/1.1 are parked (Linux); 0 while they wait in their handlers (another system, or the watch of parked connections failed: see the log).",
	}, func() float64 {
		if lot == nil || lot.Err() != nil {
			return 0
		}
		return 1
	}))
}
