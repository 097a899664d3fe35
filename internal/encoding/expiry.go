package encoding

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/streams"
)

// EarlyExpiryConsumer is the durable consumer, shared by all workers, that
// sees the early area's keys expire.
const EarlyExpiryConsumer = "encoding-worker-early-expiry"

// earlyFilter is the KV stream subject of the early area.
const earlyFilter = "$KV." + streams.EncodingsBucket + ".early.>"

// CountUnmatched consumes the markers the server writes when an early
// event's TTL ends with no encoding registered for it, and counts each as
// result "unmatched" (rule: an event for a credential cardwire knows nothing
// about). The consumer is durable and shared, so every expiry is counted
// once across replicas. It stops when the returned ConsumeContext is
// drained.
func (s *Service) CountUnmatched(ctx context.Context, js jetstream.JetStream, log zerolog.Logger) (jetstream.ConsumeContext, error) {
	cons, err := js.CreateOrUpdateConsumer(ctx, "KV_"+streams.EncodingsBucket, jetstream.ConsumerConfig{
		Durable:       EarlyExpiryConsumer,
		Description:   "cardwire worker: counts early events that expired unmatched",
		FilterSubject: earlyFilter,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", EarlyExpiryConsumer, err)
	}
	return cons.Consume(func(msg jetstream.Msg) {
		if msg.Headers().Get("Nats-Marker-Reason") == "MaxAge" {
			s.metrics.events.WithLabelValues(eventTypeLabel(earlyEventType(msg.Subject())), string(ResultUnmatched)).Inc()
			log.Info().Str("key", strings.TrimPrefix(msg.Subject(), "$KV."+streams.EncodingsBucket+".")).
				Msg("early event expired with no encoding registered")
		}
		_ = msg.Ack()
	}, jetstream.PullHeartbeat(consumeHeartbeat))
}

// earlyEventType reads the event type from an early-area subject:
// $KV.ENCODINGS.early.<ws>.<kind>.<id>.<event_id>.<type…>.
func earlyEventType(subject string) string {
	toks := strings.SplitN(subject, ".", 8)
	if len(toks) < 8 {
		return ""
	}
	return toks[7]
}
