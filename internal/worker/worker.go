package worker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/parking"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

// Options configure a Worker.
type Options struct {
	// JS creates the outbox consumer; it is also the publisher of timers,
	// dead letters and outcomes unless Publisher is set.
	JS jetstream.JetStream
	// Owned is what streams.EnsureWorker returned.
	Owned streams.Owned
	// Bucket, when set, is used instead of Owned.Bucket (tests wrap it to
	// inject failures).
	Bucket store.KV
	// Publisher, when set, is used instead of JS for publishing.
	Publisher publisher
	// Seam, when set, starts encodings, answers at deadlines and supplies
	// card numbers. Without it the worker is track-only. Without
	// Workspaces it serves every workspace with its own credentials; with
	// Workspaces each workspace's requests go through a client With that
	// workspace's credentials, sharing this one's rate limit (its own
	// credentials may then be empty).
	Seam *seam.Client
	// Workspaces, when set, is the configuration of WORKSPACES_FILE in
	// force: each workspace's Seam credentials, and API tokens scoped to
	// workspaces (API.Token must then be empty). Without it, one
	// workspace as the single-workspace variables configure it.
	Workspaces directory
	Registerer prometheus.Registerer
	Log        zerolog.Logger
	// Limits: the default workspace, skew margin, early TTL, confirm
	// timeout and maximum age.
	Limits encoding.Limits
	// OrderGrace is how long a failure-type event waits, from its arrival,
	// before it is applied (ENCODING_ORDER_GRACE).
	OrderGrace time.Duration
	// EnrichTimeout bounds the card-number fetch before an issued record.
	EnrichTimeout time.Duration
	// MaxDeliver bounds deliveries of a failing event: on the last one it
	// is dead-lettered instead of retried.
	MaxDeliver int
	// Concurrency is how many events (and, separately, timers) one worker
	// handles at once.
	Concurrency int
	// HandleTimeout bounds the handling of one event or timer.
	HandleTimeout time.Duration
	// RetryDelay is the delay before the second delivery of a failed event;
	// it doubles per delivery, up to a minute.
	RetryDelay time.Duration
	// AckWait of the outbox consumer.
	AckWait time.Duration
	API     APIOptions
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultOptions returns the documented defaults (without the NATS parts).
func DefaultOptions() Options {
	return Options{
		Limits: encoding.Limits{SkewMargin: 30 * time.Second, EarlyTTL: 10 * time.Minute,
			ConfirmTimeout: time.Minute, MaxAge: 15 * time.Minute},
		OrderGrace: 5 * time.Second, EnrichTimeout: 2 * time.Second, MaxDeliver: 8, Concurrency: 32,
		HandleTimeout: 10 * time.Second, RetryDelay: time.Second, AckWait: 30 * time.Second,
		API: DefaultAPIOptions(), Log: zerolog.Nop(),
	}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	l := o.Limits
	switch {
	case o.JS == nil:
		return errors.New("Options.JS must be set")
	case o.Owned.Bucket == nil && o.Bucket == nil, o.Owned.Events == nil, o.Owned.Timers == nil:
		return errors.New("Options.Owned must be what streams.EnsureWorker returned")
	case o.Registerer == nil:
		return errors.New("Options.Registerer must be set")
	case l.SkewMargin < 0:
		return errors.New("Options.Limits.SkewMargin must not be negative")
	case l.EarlyTTL < time.Second:
		return errors.New("Options.Limits.EarlyTTL must be at least 1s")
	case l.ConfirmTimeout <= 0:
		return errors.New("Options.Limits.ConfirmTimeout must be positive")
	case l.MaxAge < l.ConfirmTimeout:
		return errors.New("Options.Limits.MaxAge must not be shorter than ConfirmTimeout")
	case l.DefaultWorkspaceID != "" && !streams.ValidToken(l.DefaultWorkspaceID):
		return errors.New("Options.Limits.DefaultWorkspaceID is not a valid id")
	case o.OrderGrace < 0:
		return errors.New("Options.OrderGrace must not be negative")
	case o.EnrichTimeout <= 0:
		return errors.New("Options.EnrichTimeout must be positive")
	case o.MaxDeliver < 2:
		return errors.New("Options.MaxDeliver must be at least 2")
	case o.Concurrency < 1:
		return errors.New("Options.Concurrency must be positive")
	case o.HandleTimeout <= 0 || o.RetryDelay <= 0 || o.AckWait <= 0:
		return errors.New("Options.HandleTimeout, RetryDelay and AckWait must be positive")
	case o.Workspaces != nil && o.API.Token != "":
		return errors.New("Options.API.Token must be empty with Options.Workspaces: the tokens are in WORKSPACES_FILE")
	}
	return o.API.Validate()
}

// Reads of action attempts at deadlines are batched: those that fall due
// within the window share one /action_attempts/list of at most max ids.
const (
	attemptBatchWindow = 20 * time.Millisecond
	attemptBatchMax    = 100
)

// pendingSweep is how often the in-memory pending set is checked for
// entries older than any pending encoding can be.
const pendingSweep = time.Minute

// Worker is one worker replica. Several share the durable consumers.
type Worker struct {
	o       Options
	svc     *service
	log     zerolog.Logger
	intake  *runner
	timers  *runner
	outbox  *outbox
	feed    *feed
	handler http.Handler
	// waits ends long polls and event streams at Stop.
	waits     context.Context
	stopWaits context.CancelFunc
	// lot holds the parked long polls (park.go); nil where parking is
	// not supported.
	lot       *parking.Lot
	stopWatch context.CancelFunc
}

// New validates o, registers the worker's metrics and wires it; Start
// begins consuming.
func New(ctx context.Context, o Options) (*Worker, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	bucket := o.Bucket
	if bucket == nil {
		bucket = o.Owned.Bucket
	}
	var pub publisher = o.JS
	if o.Publisher != nil {
		pub = o.Publisher
	}
	m := newMetrics(o.Registerer)
	if err := registerConsumerMetrics(o.Owned.Events, o.Registerer); err != nil {
		return nil, err
	}
	bucketStream, err := o.JS.Stream(ctx, streams.BucketStream)
	if err != nil {
		return nil, fmt.Errorf("bucket stream: %w", err)
	}
	indexStream, err := o.JS.Stream(ctx, streams.PendingStream)
	if err != nil {
		return nil, fmt.Errorf("pending index stream: %w", err)
	}
	w := &Worker{o: o, log: o.Log}
	w.svc = &service{store: store.New(bucket, bucketStream, store.Index{Publisher: o.JS, Stream: indexStream}), timers: &scheduler{p: pub}, limits: o.Limits, enrich: o.EnrichTimeout,
		metrics: m, log: o.Log.With().Str("component", "encoding").Logger(), now: o.Now}
	w.svc.tenants = newTenants(o.Workspaces, o.Seam)
	observe := func(msg jetstream.Msg, d Disposition, took time.Duration) {
		// The receiver's header names the type; only a message without one
		// (published by something else) is read again for it.
		typ := msg.Headers().Get(streams.HeaderEventType)
		if typ == "" {
			if ev, err := encoding.ParseEvent(msg.Data()); err == nil {
				typ = ev.EventType
			}
		}
		m.events.WithLabelValues(eventTypeLabel(typ), string(d.Result)).Inc()
		m.handleDuration.WithLabelValues(string(d.Result)).Observe(took.Seconds())
	}
	w.intake, err = newRunner(runnerOptions{
		name: streams.WorkerConsumer, consumer: o.Owned.Events, handle: w.svc.handleEvent(o.OrderGrace), observe: observe,
		concurrency: o.Concurrency, timeout: o.HandleTimeout, maxDeliver: o.MaxDeliver,
		deadLetter: deadLetterTo(pub, streams.WorkerConsumer), retryDelay: o.RetryDelay,
		log: o.Log.With().Str("component", "intake").Logger(),
	})
	if err != nil {
		return nil, err
	}
	w.timers, err = newRunner(runnerOptions{
		name: streams.TimersConsumer, consumer: o.Owned.Timers, handle: w.svc.handleTimer,
		concurrency: 4 * o.Concurrency, timeout: o.HandleTimeout, retryDelay: time.Second, maxRetry: 30 * time.Second,
		log: o.Log.With().Str("component", "timers").Logger(),
	})
	if err != nil {
		return nil, err
	}
	cons, err := streams.EnsureOutbox(ctx, o.JS, store.RecordsSubject, o.AckWait)
	if err != nil {
		return nil, err
	}
	w.outbox = &outbox{cons: cons, p: pub, metrics: m, log: o.Log.With().Str("component", "outbox").Logger(),
		unpin: func(ctx context.Context) error {
			st, err := o.JS.Stream(ctx, streams.BucketStream)
			if err != nil {
				return err
			}
			return st.UnpinConsumer(ctx, streams.OutboxConsumer, streams.OutboxGroup)
		}}
	w.feed = newFeed(o.API.MaxWaiters)
	w.svc.settledHere, w.svc.latest = w.feed.settledHere, w.feed.latest
	if err := registerFeedGauges(w.feed, o.Registerer); err != nil {
		return nil, err
	}
	w.waits, w.stopWaits = context.WithCancel(context.Background())
	switch w.lot, err = parking.New(); {
	case errors.Is(err, errors.ErrUnsupported):
		w.log.Info().Err(err).Msg("long polls wait in their handlers")
	case err != nil:
		return nil, err
	}
	if err := registerParkingGauge(w.lot, o.Registerer); err != nil {
		return nil, err
	}
	w.handler = w.routes()
	// Last: its goroutine must not outlive a New that failed.
	w.svc.unindex = newUnindexer(w.svc.store, w.svc.log)
	return w, nil
}

// Start begins the feed (it returns once the pending index is read), the
// outbox, the timers and the intake. Stop ends them.
func (w *Worker) Start(ctx context.Context) error {
	feedCtx, stop := context.WithCancel(context.Background())
	w.stopWatch = stop
	if err := w.feed.start(feedCtx, ctx, w.svc.store, w.log); err != nil {
		return fmt.Errorf("feed: %w", err)
	}
	go func() {
		t := time.NewTicker(pendingSweep)
		defer t.Stop()
		for {
			select {
			case <-feedCtx.Done():
				return
			case <-t.C:
				w.feed.sweep(feedCtx, w.svc.store, w.o.Limits.MaxAge+pendingSweep, w.o.Now, w.log)
			}
		}
	}()
	if err := w.outbox.start(); err != nil {
		return err
	}
	if err := w.timers.start(); err != nil {
		return err
	}
	return w.intake.start()
}

// Handler is the /v1/encodings API.
func (w *Worker) Handler() http.Handler { return w.handler }

// EndWaits ends open long polls and event streams at once; registrations
// and cancels in flight finish. Call it before shutting the API's HTTP
// server down.
func (w *Worker) EndWaits() {
	w.stopWaits()
	if w.lot != nil {
		w.lot.Shutdown()
	}
}

// Stop ends waits and sees the parked long polls answered, then drains
// the intake and the timers (messages in hand finish and are
// acknowledged), then the outbox, which publishes what they stored, all
// within ctx.
func (w *Worker) Stop(ctx context.Context) error {
	w.stopWaits()
	var errs []error
	if w.lot != nil {
		if err := w.lot.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("parked long polls: %w", err))
		}
	}
	errs = append(errs, w.intake.stop(ctx), w.timers.stop(ctx), w.outbox.stop(ctx))
	w.svc.unindex.stop(ctx)
	if w.stopWatch != nil {
		w.stopWatch()
	}
	return errors.Join(errs...)
}
