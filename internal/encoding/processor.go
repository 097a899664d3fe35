package encoding

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/streams"
)

// ProcessorOptions configure a Processor.
type ProcessorOptions struct {
	Service  *Service
	Consumer jetstream.Consumer
	// Publisher stores dead letters in SEAM_EVENTS.
	Publisher publisher
	Log       zerolog.Logger
	// MaxDeliver bounds deliveries: on the last one a failing event is
	// dead-lettered instead of retried. The consumer redelivers without
	// limit, so a dead letter that cannot be stored is retried, not lost.
	MaxDeliver int
	// Concurrency is how many events one worker handles at once.
	Concurrency int
	// HandleTimeout bounds the handling of one event.
	HandleTimeout time.Duration
	// RetryDelay is the delay before the second delivery of a failed event;
	// it doubles per delivery, up to a minute. 1s when zero.
	RetryDelay time.Duration
}

// Validate reports the first option that cannot work.
func (o ProcessorOptions) Validate() error {
	switch {
	case o.Service == nil || o.Consumer == nil || o.Publisher == nil:
		return errors.New("ProcessorOptions.Service, Consumer and Publisher must be set")
	case o.MaxDeliver < 2:
		return errors.New("ProcessorOptions.MaxDeliver must be at least 2")
	case o.Concurrency < 1:
		return errors.New("ProcessorOptions.Concurrency must be positive")
	case o.HandleTimeout <= 0:
		return errors.New("ProcessorOptions.HandleTimeout must be positive")
	}
	return nil
}

// Processor consumes Seam events from the shared durable consumer and
// settles encodings. Several processors (worker replicas) share the consumer.
type Processor struct {
	o     ProcessorOptions
	cc    jetstream.ConsumeContext
	slots chan struct{}
	wg    sync.WaitGroup
}

// NewProcessor validates o.
func NewProcessor(o ProcessorOptions) (*Processor, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	return &Processor{o: o, slots: make(chan struct{}, o.Concurrency)}, nil
}

// consumeHeartbeat is the idle heartbeat every pull of the worker's
// consumers asks for. When a cluster node goes away, a pull sent before the
// consumer's new leader is up is answered "no responders", and nats.go then
// pulls again only after two missed heartbeats: with its default (half the
// 30 s pull expiry), every worker stopped settling encodings for up to 30 s
// after the loss of one node (seen in TestClusterScaleOut). 2 s bounds that
// pause to about 4 s, for one tiny message per idle pull every 2 s.
const consumeHeartbeat = 2 * time.Second

// Start begins consuming. Stop ends it.
func (p *Processor) Start() error {
	cc, err := p.o.Consumer.Consume(p.dispatch,
		jetstream.PullMaxMessages(2*p.o.Concurrency),
		jetstream.PullHeartbeat(consumeHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			p.o.Log.Warn().Err(err).Msg("consume")
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", streams.WorkerConsumer, err)
	}
	p.cc = cc
	return nil
}

// Stop stops pulling, lets the events in hand finish (acked), and returns
// when they have or ctx ends. Events not acked are redelivered to another
// worker after the consumer's AckWait.
func (p *Processor) Stop(ctx context.Context) error {
	if p.cc == nil {
		return nil
	}
	p.cc.Drain()
	done := make(chan struct{})
	go func() {
		<-p.cc.Closed()
		p.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("processor drain: %w", ctx.Err())
	}
}

// dispatch runs in the consume goroutine; it hands the event to a bounded
// set of goroutines so a slow KV round trip does not hold the others.
func (p *Processor) dispatch(msg jetstream.Msg) {
	p.slots <- struct{}{}
	p.wg.Add(1)
	go func() {
		defer func() { <-p.slots; p.wg.Done() }()
		p.handle(msg)
	}()
}

func (p *Processor) handle(msg jetstream.Msg) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), p.o.HandleTimeout)
	defer cancel()
	m := p.o.Service.metrics
	eventType := msg.Headers().Get(streams.HeaderEventType)
	ev, err := ParseEvent(msg.Data())
	var res Result
	if err == nil {
		eventType = ev.EventType
		res, err = p.o.Service.Apply(ctx, ev)
	}
	// Ack and dead letter get their own time: the handling context may be
	// what ran out.
	dctx, dcancel := context.WithTimeout(context.Background(), p.o.HandleTimeout)
	defer dcancel()
	res = p.decide(dctx, msg, res, err)
	m.events.WithLabelValues(eventTypeLabel(eventType), string(res)).Inc()
	m.handleDuration.WithLabelValues(string(res)).Observe(time.Since(start).Seconds())
}

// decide is the one place that turns a handling result into Ack, a delayed
// Nak, or a dead letter plus Term, and returns the result to count.
func (p *Processor) decide(ctx context.Context, msg jetstream.Msg, res Result, err error) Result {
	log := p.o.Log.With().Str("subject", msg.Subject()).Str("event_id", msg.Headers().Get(streams.HeaderEventID)).Logger()
	if err == nil {
		if ackErr := msg.DoubleAck(ctx); ackErr != nil {
			// The state change is durable; a redelivery will be a duplicate.
			log.Warn().Err(ackErr).Msg("ack failed; the event will be redelivered")
		}
		return res
	}
	delivered := uint64(1)
	if meta, mErr := msg.Metadata(); mErr == nil {
		delivered = meta.NumDelivered
	}
	if errors.Is(err, ErrBadEvent) || delivered >= uint64(p.o.MaxDeliver) {
		if dlErr := p.deadLetter(ctx, msg, err, delivered); dlErr != nil {
			log.Error().Err(dlErr).AnErr("reason", err).Msg("dead letter not stored; retrying the event")
			_ = msg.NakWithDelay(p.backoff(delivered))
			return ResultDeadLettered
		}
		log.Error().Err(err).Uint64("deliveries", delivered).Msg("event dead-lettered")
		_ = msg.TermWithReason(err.Error())
		return ResultDeadLettered
	}
	delay := p.backoff(delivered)
	log.Warn().Err(err).Uint64("deliveries", delivered).Dur("retry_in", delay).Msg("event failed; will retry")
	_ = msg.NakWithDelay(delay)
	return ResultRetried
}

// backoff is the delay before delivery n+1: RetryDelay, doubling, capped
// at a minute.
func (p *Processor) backoff(delivered uint64) time.Duration {
	return min(p.o.RetryDelay<<min(delivered-1, 16), time.Minute)
}

// deadLetter stores a copy of msg, with why, on the dead-letter subject.
func (p *Processor) deadLetter(ctx context.Context, msg jetstream.Msg, reason error, delivered uint64) error {
	h := nats.Header{}
	for k, v := range msg.Headers() {
		if k != jetstream.MsgIDHeader && k != jetstream.ExpectedStreamHeader {
			h[k] = v
		}
	}
	h.Set(streams.HeaderDeadLetterReason, reason.Error())
	h.Set(streams.HeaderDeadLetterDeliveries, strconv.FormatUint(delivered, 10))
	h.Set("Cardwire-Original-Subject", msg.Subject())
	if meta, err := msg.Metadata(); err == nil {
		h.Set(jetstream.MsgIDHeader, "dl:"+strconv.FormatUint(meta.Sequence.Stream, 10))
	}
	_, err := p.o.Publisher.PublishMsg(ctx, &nats.Msg{
		Subject: streams.DeadLetterSubject(streams.WorkerConsumer), Data: msg.Data(), Header: h,
	})
	return err
}
