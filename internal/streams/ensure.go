package streams

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EventsStreamOptions configure EventsStream.
type EventsStreamOptions struct {
	// Replicas is 1 on a single server and 3 on a production cluster.
	Replicas int
	// MaxAge is how long events are kept.
	MaxAge time.Duration
	// Duplicates is the dedupe window on Nats-Msg-Id (the webhook id). It
	// must cover Svix's quick retries; later duplicates are caught by the
	// worker's per-event_id idempotency.
	Duplicates time.Duration
}

// DefaultEventsStreamOptions returns the defaults the README documents.
func DefaultEventsStreamOptions() EventsStreamOptions {
	return EventsStreamOptions{Replicas: 1, MaxAge: 7 * 24 * time.Hour, Duplicates: 30 * time.Minute}
}

// Validate reports the first option that cannot work.
func (o EventsStreamOptions) Validate() error {
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return fmt.Errorf("EventsStreamOptions.Replicas must be between 1 and 5, got %d", o.Replicas)
	case o.MaxAge <= 0:
		return errors.New("EventsStreamOptions.MaxAge must be positive")
	case o.Duplicates <= 0:
		return errors.New("EventsStreamOptions.Duplicates must be positive")
	case o.Duplicates > o.MaxAge:
		return errors.New("EventsStreamOptions.Duplicates must not exceed MaxAge")
	}
	return nil
}

// EventsStreamConfig is the stream configuration for EventsStream.
func EventsStreamConfig(o EventsStreamOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "Verified Seam webhooks, raw body, one message per webhook id",
		Subjects:    EventsStreamSubjects(),
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Replicas:    o.Replicas,
		MaxAge:      o.MaxAge,
		Duplicates:  o.Duplicates,
	}
}

// streamManager is the part of jetstream.JetStream that Ensure* needs.
type streamManager interface {
	CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
}

// EnsureEventsStream creates EventsStream or updates it to o. It fails if
// the options are invalid or the server refuses the configuration (for
// example a replica count above the cluster size).
func EnsureEventsStream(ctx context.Context, js streamManager, o EventsStreamOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(ctx, EventsStreamConfig(o)); err != nil {
		return fmt.Errorf("create or update stream %s: %w", EventsStream, err)
	}
	return nil
}
