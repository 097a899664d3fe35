package encoding

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// PendingTracker keeps the number of pending encodings from a watch on the
// records in the bucket, so every replica reports the same, correct value
// across restarts (a per-process counter would not).
type PendingTracker struct {
	mu      sync.Mutex
	pending map[string]bool
}

// TrackPending starts the watch and registers
// cardwire_worker_encodings_pending on reg. The watch ends with ctx.
func TrackPending(ctx context.Context, bucket kv, reg prometheus.Registerer, log zerolog.Logger) (*PendingTracker, error) {
	w, err := bucket.Watch(ctx, recordKey("*"))
	if err != nil {
		return nil, fmt.Errorf("watch encodings: %w", err)
	}
	t := &PendingTracker{pending: map[string]bool{}}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cardwire_worker_encodings_pending",
		Help: "Encodings pending right now, from the ENCODINGS bucket.",
	}, func() float64 { return float64(t.Count()) })); err != nil {
		_ = w.Stop()
		return nil, err
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for e := range w.Updates() {
			if e == nil {
				continue // the end of the initial values
			}
			id := strings.TrimPrefix(e.Key(), "enc.")
			t.mu.Lock()
			if e.Operation() == jetstream.KeyValuePut {
				var rec Record
				if json.Unmarshal(e.Value(), &rec) != nil {
					log.Warn().Str("key", e.Key()).Msg("undecodable encoding record")
				}
				t.pending[id] = rec.Status == StatusPending
			} else {
				delete(t.pending, id)
			}
			t.mu.Unlock()
		}
	}()
	return t, nil
}

// Count is the number of pending encodings.
func (t *PendingTracker) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.pending {
		if p {
			n++
		}
	}
	return n
}

// consumerCollector reports the consumer's backlog from consumer info at
// scrape time.
type consumerCollector struct {
	cons                 jetstream.Consumer
	pending, ackPending  *prometheus.Desc
	redelivered, waiting *prometheus.Desc
}

// RegisterConsumerMetrics registers cardwire_worker_consumer_* gauges that
// read the consumer's info at each scrape.
func RegisterConsumerMetrics(cons jetstream.Consumer, reg prometheus.Registerer) error {
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
