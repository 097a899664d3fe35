package streams

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// EventsStreamOptions configure EventsStream.
type EventsStreamOptions struct {
	// Replicas is 1 on a single server and 3 on a production cluster.
	Replicas int
	// MaxAge is how long events are kept.
	MaxAge time.Duration
	// Duplicates is the dedupe window on Nats-Msg-Id (evt:<event_id>). It
	// must cover Svix's quick retries, a rotation's second webhook and the
	// catch-up's overlap; later duplicates are caught by the worker's
	// per-event_id idempotency. Each id kept costs nats-server about 120
	// bytes (BenchmarkDuplicateWindowMemory): an hour of 1M events a day is
	// 5 MB.
	Duplicates time.Duration
}

// DefaultEventsStreamOptions returns the defaults the README documents.
func DefaultEventsStreamOptions() EventsStreamOptions {
	return EventsStreamOptions{Replicas: 1, MaxAge: 7 * 24 * time.Hour, Duplicates: time.Hour}
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

// WorkerOptions configure what the worker owns: the ENCODINGS bucket, the
// ENCODING_EVENTS stream and the encoding-worker consumer.
type WorkerOptions struct {
	// Replicas of the bucket and the outcomes stream.
	Replicas int
	// RecordTTL is how long an encoding record and its index keys live.
	RecordTTL time.Duration
	// OutcomesMaxAge is how long outcome messages are kept.
	OutcomesMaxAge time.Duration
	// OutcomesDuplicates is the outcome stream's dedupe window.
	OutcomesDuplicates time.Duration
	// TimerDuplicates is the timer stream's dedupe window: a replayed
	// registration schedules the same deadline again within it.
	TimerDuplicates time.Duration
	// TimerMaxAckPending bounds the due timers handed out at once. Timers
	// wait in the stream as message schedules until they are due, so it
	// bounds work in progress, not how many encodings may be pending.
	TimerMaxAckPending int
	// AckWait is how long a delivered event may stay unacknowledged before
	// it is redelivered (to any worker).
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one event. The worker enforces it,
	// dead-lettering on the last delivery; the consumer itself redelivers
	// without limit, so an event whose dead letter could not be stored is
	// retried instead of dropped. Delays come from the worker's
	// NakWithDelay, not from the consumer's BackOff (which would also
	// shorten the first AckWait).
	MaxDeliver int
}

// DefaultWorkerOptions returns the defaults the README documents.
func DefaultWorkerOptions() WorkerOptions {
	return WorkerOptions{
		Replicas:           1,
		RecordTTL:          30 * 24 * time.Hour,
		OutcomesMaxAge:     7 * 24 * time.Hour,
		OutcomesDuplicates: 30 * time.Minute,
		TimerDuplicates:    2 * time.Hour,
		TimerMaxAckPending: 1000,
		AckWait:            30 * time.Second,
		MaxDeliver:         8,
	}
}

// Validate reports the first option that cannot work.
func (o WorkerOptions) Validate() error {
	switch {
	case o.Replicas < 1 || o.Replicas > 5:
		return fmt.Errorf("WorkerOptions.Replicas must be between 1 and 5, got %d", o.Replicas)
	case o.RecordTTL <= 0 || o.OutcomesMaxAge <= 0 || o.OutcomesDuplicates <= 0 || o.TimerDuplicates <= 0 || o.AckWait <= 0:
		return errors.New("WorkerOptions durations must be positive")
	case o.TimerMaxAckPending < 1:
		return errors.New("WorkerOptions.TimerMaxAckPending must be positive")
	case o.MaxDeliver < 2:
		return errors.New("WorkerOptions.MaxDeliver must be at least 2")
	}
	return nil
}

// MaxRevisions is how many revisions one encoding record may have, and the
// ENCODINGS bucket's history: the outbox publishes every revision, so the
// bucket must still hold one the outbox has not reached. A record has a
// handful (pending, the attempt id, deadline extensions doubling the wait,
// the final state, the card number); the store refuses a change beyond it.
const MaxRevisions = 64

// workerManager is the part of jetstream.JetStream that EnsureWorker needs.
type workerManager interface {
	streamManager
	CreateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	UpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
	KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error)
	CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
	Consumer(ctx context.Context, stream string, consumer string) (jetstream.Consumer, error)
}

// Owned is what EnsureWorker returns: the records' bucket and the two
// consumers.
type Owned struct {
	Bucket jetstream.KeyValue
	Events jetstream.Consumer
	Timers jetstream.Consumer
}

// EnsureWorker creates or updates the ENCODINGS and ENCODINGS_PENDING
// buckets, the ENCODING_EVENTS
// and ENCODING_TIMERS streams, the encoding-worker consumer on SEAM_EVENTS
// (which must exist) and the encoding-timers consumer.
func EnsureWorker(ctx context.Context, js workerManager, o WorkerOptions) (Owned, error) {
	kv, events, err := ensureWorker(ctx, js, o)
	if err != nil {
		return Owned{}, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, PendingStreamConfig(o)); err != nil {
		return Owned{}, fmt.Errorf("create or update bucket %s: %w", PendingBucket, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: TimersStream,
		Description: "Encoding deadlines, card-number retries and kept-event expiries: message schedules on " +
			SchedulesSubjectPrefix + ".> that the server publishes to " + TimersSubjectPrefix + ".> when due",
		Subjects:          []string{TimersSubjectPrefix + ".>", SchedulesSubjectPrefix + ".>"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		MaxAge:            o.RecordTTL,
		Duplicates:        o.TimerDuplicates,
		AllowMsgSchedules: true,
		AllowRollup:       true,
	}); err != nil {
		return Owned{}, fmt.Errorf("create or update stream %s: %w", TimersStream, err)
	}
	timers, err := js.CreateOrUpdateConsumer(ctx, TimersStream, jetstream.ConsumerConfig{
		Durable:       TimersConsumer,
		Description:   "cardwire worker: due encoding deadlines, enrichment retries and kept-event expiries",
		FilterSubject: TimersSubjectPrefix + ".>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: o.TimerMaxAckPending,
	})
	if err != nil {
		return Owned{}, fmt.Errorf("create or update consumer %s on %s: %w", TimersConsumer, TimersStream, err)
	}
	return Owned{Bucket: kv, Events: events, Timers: timers}, nil
}

func ensureWorker(ctx context.Context, js workerManager, o WorkerOptions) (jetstream.KeyValue, jetstream.Consumer, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	kv, err := ensureBucket(ctx, js, o)
	if err != nil {
		return nil, nil, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        OutcomesStream,
		Description: "Encoding state changes: every revision of a record on encodings.<workspace_id>.<status>",
		Subjects:    []string{OutcomesSubjectPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.OutcomesMaxAge,
		Duplicates:  o.OutcomesDuplicates,
	}); err != nil {
		return nil, nil, fmt.Errorf("create or update stream %s: %w", OutcomesStream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{
		Durable:        WorkerConsumer,
		Description:    "cardwire worker: settles encodings from Seam events",
		FilterSubjects: WorkerFilterSubjects(),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        o.AckWait,
		MaxDeliver:     -1,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  1000,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("create or update consumer %s on %s: %w", WorkerConsumer, EventsStream, err)
	}
	return kv, cons, nil
}

// BucketStream is the name of the stream behind EncodingsBucket.
const BucketStream = "KV_" + EncodingsBucket

// ensureBucket creates EncodingsBucket once, with direct gets off, and
// binds it. With replicas a direct get may be answered by a follower that
// has not seen the latest write, and the registration/event handshake needs
// every read to see it. The bucket is created from its stream
// configuration because CreateKeyValue (and CreateOrUpdateKeyValue, on
// every start) would turn direct gets on; an existing bucket is only ever
// moved towards this configuration (direct gets off, enough history), so
// concurrent start-ups cannot flip it back and forth.
func ensureBucket(ctx context.Context, js workerManager, o WorkerOptions) (jetstream.KeyValue, error) {
	st, err := js.Stream(ctx, BucketStream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = js.CreateStream(ctx, BucketStreamConfig(o))
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("create bucket %s: %w", EncodingsBucket, err)
		}
	case err != nil:
		return nil, fmt.Errorf("stream %s: %w", BucketStream, err)
	default:
		cfg := st.CachedInfo().Config
		if cfg.AllowDirect || cfg.MaxMsgsPerSubject < MaxRevisions || !cfg.AllowMsgTTL || cfg.Replicas != o.Replicas || cfg.MaxAge != o.RecordTTL {
			cfg.AllowDirect = false
			cfg.MaxMsgsPerSubject = max(cfg.MaxMsgsPerSubject, MaxRevisions)
			cfg.AllowMsgTTL = true
			cfg.Replicas, cfg.MaxAge = o.Replicas, o.RecordTTL
			if _, err := js.UpdateStream(ctx, cfg); err != nil {
				return nil, fmt.Errorf("update bucket %s: %w", EncodingsBucket, err)
			}
		}
	}
	kv, err := js.KeyValue(ctx, EncodingsBucket)
	if err != nil {
		return nil, fmt.Errorf("bind bucket %s: %w", EncodingsBucket, err)
	}
	return kv, nil
}

// BucketStreamConfig is the stream behind EncodingsBucket: what
// CreateKeyValue would make, with direct gets off, MaxRevisions of
// history, and per-key TTLs (idempotency keys) allowed.
func BucketStreamConfig(o WorkerOptions) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              BucketStream,
		Description:       "Encoding records (every revision, for the outbox), target and encoder states, idempotency keys",
		Subjects:          []string{"$KV." + EncodingsBucket + ".>"},
		MaxMsgsPerSubject: MaxRevisions,
		MaxBytes:          -1,
		MaxAge:            o.RecordTTL,
		MaxMsgSize:        -1,
		Storage:           jetstream.FileStorage,
		Replicas:          o.Replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       false,
		Discard:           jetstream.DiscardNew,
		AllowMsgTTL:       true,
	}
}

// PendingStream is the name of the stream behind PendingBucket.
const PendingStream = "KV_" + PendingBucket

// PendingMarkerTTL is how long the marker that takes an encoding out of
// the pending index stays: with one message per key, storing it has
// already removed the entry, so it has nothing left to do (1 s is the
// shortest TTL a message may have).
const PendingMarkerTTL = time.Second

// PendingStreamConfig is the stream behind PendingBucket. It is a bucket
// of its own, apart from the records, for its history of one: the delete
// marker that settles an entry replaces it as a limit (a plain append; the
// server then drops the entry without a tombstone), and the marker expires
// a second later, so the index holds the pending encodings and nothing
// else. In the records' bucket, with their history, an entry could only
// go with a purge: an API request, a subject walk and a tombstone per
// settled encoding, which cost nats-server a third of its CPU in
// BenchmarkSettle. The rest is EncodingsBucket's configuration (direct
// gets off, per-message TTLs allowed, the same replicas and maximum age).
func PendingStreamConfig(o WorkerOptions) jetstream.StreamConfig {
	cfg := BucketStreamConfig(o)
	cfg.Name = PendingStream
	cfg.Description = "The pending index: one key per pending encoding, <workspace_id>.<requested_ms>.<encoding_id>, read at start-up"
	cfg.Subjects = []string{"$KV." + PendingBucket + ".>"}
	cfg.MaxMsgsPerSubject = 1
	return cfg
}

// outboxPinnedTTL is how long the outbox consumer stays pinned to a worker
// that sends no pull: after a worker dies, another takes over the outbox
// within it.
const outboxPinnedTTL = 10 * time.Second

// OutboxGroup is the priority group outbox pulls name.
const OutboxGroup = "outbox"

// EnsureOutbox creates or updates the OutboxConsumer on the bucket's stream,
// filtered to the record subjects (recordsSubject, from the store). It is
// pinned: one worker at a time publishes, in the bucket's order, so a
// record's revisions reach ENCODING_EVENTS in order; another takes over
// within outboxPinnedTTL when it goes away.
func EnsureOutbox(ctx context.Context, js workerManager, recordsSubject string, ackWait time.Duration) (jetstream.Consumer, error) {
	cfg := OutboxConfig(recordsSubject, ackWait)
	// Where an existing outbox starts is kept (it cannot be changed, and
	// an operator may have started it at a sequence on purpose).
	if old, err := js.Consumer(ctx, BucketStream, OutboxConsumer); err == nil {
		c := old.CachedInfo().Config
		cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = c.DeliverPolicy, c.OptStartSeq, c.OptStartTime
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, BucketStream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s on %s: %w", OutboxConsumer, BucketStream, err)
	}
	return cons, nil
}

// OutboxConfig is the configuration of OutboxConsumer.
func OutboxConfig(recordsSubject string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        OutboxConsumer,
		Description:    "cardwire worker: publishes every stored record revision to " + OutcomesStream,
		FilterSubject:  recordsSubject,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
		MaxAckPending:  10000,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{OutboxGroup},
		PinnedTTL:      outboxPinnedTTL,
	}
}

// ErrStreamMisconfigured reports an existing stream that cannot keep
// cardwire's promises (for example memory storage, or a missing subject).
var ErrStreamMisconfigured = errors.New("stream misconfigured")

// CheckEventsStream reports ErrStreamMisconfigured unless cfg (an existing
// SEAM_EVENTS, possibly managed elsewhere) stores on file, dedupes on the
// message id, and captures every subject the receiver publishes on.
func CheckEventsStream(cfg jetstream.StreamConfig) error {
	switch {
	case cfg.Storage != jetstream.FileStorage:
		return fmt.Errorf("%w: %s must use file storage, so a 204 means the event survives a restart", ErrStreamMisconfigured, cfg.Name)
	case cfg.Duplicates <= 0:
		return fmt.Errorf("%w: %s needs a duplicate window", ErrStreamMisconfigured, cfg.Name)
	}
	for _, want := range EventsStreamSubjects() {
		if !slices.ContainsFunc(cfg.Subjects, func(have string) bool { return subjectCovers(have, want) }) {
			return fmt.Errorf("%w: %s does not capture %s", ErrStreamMisconfigured, cfg.Name, want)
		}
	}
	return nil
}

// subjectCovers reports whether every subject matching sub also matches
// pattern (both may hold wildcards).
func subjectCovers(pattern, sub string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(sub, ".")
	for i, pt := range p {
		if pt == ">" {
			return i < len(s)
		}
		if i >= len(s) {
			return false
		}
		switch {
		case pt == "*" && s[i] != ">":
		case pt == s[i]:
		default:
			return false
		}
	}
	return len(p) == len(s)
}
