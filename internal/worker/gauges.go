package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/store"
)

// pendingTracker keeps the number of pending encodings from a watch on the
// records in the bucket, so every replica reports the same, correct value
// across restarts (a per-process counter would not).
type pendingTracker struct {
	mu      sync.Mutex
	pending map[string]bool
}

// trackPending starts the watch and registers
// cardwire_worker_encodings_pending on reg. The watch ends with ctx.
func trackPending(ctx context.Context, st *store.Store, reg prometheus.Registerer) error {
	updates, err := st.WatchAll(ctx)
	if err != nil {
		return err
	}
	t := &pendingTracker{pending: map[string]bool{}}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cardwire_worker_encodings_pending",
		Help: "Encodings pending right now, from the ENCODINGS bucket.",
	}, func() float64 { return float64(t.count()) })); err != nil {
		return err
	}
	go func() {
		for rec := range updates {
			t.mu.Lock()
			if rec.Status == encoding.StatusPending {
				t.pending[rec.EncodingID] = true
			} else {
				delete(t.pending, rec.EncodingID)
			}
			t.mu.Unlock()
		}
	}()
	return nil
}

func (t *pendingTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
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
