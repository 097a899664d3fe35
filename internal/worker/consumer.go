package worker

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

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// Disposition is what a handler made of one message: its Result (for the
// counter), and either an error (retry after a back-off, or give up on a
// poison message), a Delay (come back later: not due, or held), or
// neither (done: acknowledge).
type Disposition struct {
	Result encoding.Result
	Delay  time.Duration
	Err    error
}

// handler handles one consumed message.
type handler func(ctx context.Context, msg jetstream.Msg) Disposition

// middleware wraps a handler. The order is fixed in newRunner: metrics
// outermost (it sees the final result), then the timeout, then the
// handler; tracing would go between the two.
type middleware func(handler) handler

// withTimeout bounds one handling.
func withTimeout(d time.Duration) middleware {
	return func(next handler) handler {
		return func(ctx context.Context, msg jetstream.Msg) Disposition {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, msg)
		}
	}
}

// poison marks a message that can never be handled: it is dead-lettered
// (or, on a consumer without dead letters, dropped with a log line) at
// once instead of retried.
var poison = encoding.ErrBadEvent

// runnerOptions configure one consumer runner.
type runnerOptions struct {
	name     string
	consumer jetstream.Consumer
	handle   handler
	// observe, when set, is called with each final disposition and the
	// handling time (metrics).
	observe     func(msg jetstream.Msg, d Disposition, took time.Duration)
	concurrency int
	timeout     time.Duration
	// maxDeliver > 0 dead-letters a failing message on that delivery, with
	// deadLetter; 0 retries for ever.
	maxDeliver int
	deadLetter func(ctx context.Context, msg jetstream.Msg, reason error, delivered uint64) error
	retryDelay time.Duration
	maxRetry   time.Duration
	log        zerolog.Logger
}

// runner consumes one durable consumer with a bounded number of handlers
// at once and turns every disposition into Ack, NakWithDelay or Term in one
// place (settle). The intake of Seam events and the timers share it.
//
// The handlers are concurrency goroutines that live as long as the
// consumption: a goroutine per message would grow a fresh stack for each
// one (a tenth of the worker's CPU in BenchmarkSettle's profile).
type runner struct {
	o    runnerOptions
	cc   jetstream.ConsumeContext
	work chan jetstream.Msg
	wg   sync.WaitGroup
	// done closes work once, after the last dispatch.
	done sync.Once
}

func newRunner(o runnerOptions) (*runner, error) {
	if o.consumer == nil || o.handle == nil || o.concurrency < 1 || o.timeout <= 0 {
		return nil, fmt.Errorf("consumer %s: a consumer, a handler, a positive concurrency and timeout are required", o.name)
	}
	if o.maxDeliver > 0 && o.deadLetter == nil {
		return nil, fmt.Errorf("consumer %s: maxDeliver needs a dead-letter function", o.name)
	}
	if o.retryDelay <= 0 {
		o.retryDelay = time.Second
	}
	if o.maxRetry <= 0 {
		o.maxRetry = time.Minute
	}
	o.handle = withTimeout(o.timeout)(o.handle)
	return &runner{o: o, work: make(chan jetstream.Msg)}, nil
}

// consumeHeartbeat is the idle heartbeat every pull of the worker's
// consumers asks for. When a cluster node goes away, a pull sent before the
// consumer's new leader is up is answered "no responders", and nats.go then
// pulls again only after two missed heartbeats: with its default (half the
// 30 s pull expiry), every worker stopped settling encodings for up to 30 s
// after the loss of one node (seen in TestClusterScaleOut). 2 s bounds that
// pause to about 4 s, for one tiny message per idle pull every 2 s.
const consumeHeartbeat = 2 * time.Second

func (r *runner) start() error {
	for range r.o.concurrency {
		r.wg.Go(func() {
			for msg := range r.work {
				r.handle(msg)
			}
		})
	}
	cc, err := r.o.consumer.Consume(r.dispatch,
		jetstream.PullMaxMessages(2*r.o.concurrency),
		jetstream.PullHeartbeat(consumeHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			r.o.log.Warn().Err(err).Msg("consume")
		}))
	if err != nil {
		r.done.Do(func() { close(r.work) })
		return fmt.Errorf("consume %s: %w", r.o.name, err)
	}
	r.cc = cc
	return nil
}

// stop stops pulling, lets the messages in hand finish, and returns when
// they have or ctx ends. Messages not acked are redelivered after AckWait.
func (r *runner) stop(ctx context.Context) error {
	if r.cc == nil {
		return nil
	}
	r.cc.Drain()
	done := make(chan struct{})
	go func() {
		<-r.cc.Closed() // no dispatch after this
		r.done.Do(func() { close(r.work) })
		r.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s drain: %w", r.o.name, ctx.Err())
	}
}

// dispatch runs in the consume goroutine; it hands the message to the
// first free handler (waiting for one), so a slow round trip does not hold
// the others.
func (r *runner) dispatch(msg jetstream.Msg) { r.work <- msg }

// handle handles one message and settles its disposition.
func (r *runner) handle(msg jetstream.Msg) {
	start := time.Now()
	d := r.o.handle(context.Background(), msg)
	// Ack and dead letter get their own time: the handling context may
	// be what ran out.
	ctx, cancel := context.WithTimeout(context.Background(), r.o.timeout)
	defer cancel()
	d = r.settle(ctx, msg, d)
	if r.o.observe != nil {
		r.o.observe(msg, d, time.Since(start))
	}
}

// settle is the one place that turns a disposition into Ack, a delayed Nak,
// or a dead letter plus Term, and returns the disposition to count.
func (r *runner) settle(ctx context.Context, msg jetstream.Msg, d Disposition) Disposition {
	if d.Err == nil {
		if d.Delay > 0 {
			_ = msg.NakWithDelay(d.Delay)
			return d
		}
		if err := msg.Ack(); err != nil {
			// The change is durable; a redelivery finds it done.
			r.msgLog(msg).Warn().Err(err).Msg("ack failed; the message will be redelivered")
		}
		return d
	}
	log := r.msgLog(msg)
	delivered := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		delivered = meta.NumDelivered
	}
	giveUp := errors.Is(d.Err, poison) || (r.o.maxDeliver > 0 && delivered >= uint64(r.o.maxDeliver))
	switch {
	case giveUp && r.o.deadLetter == nil:
		log.Error().Err(d.Err).Msg("message can never be handled; dropped")
		_ = msg.TermWithReason(d.Err.Error())
		return Disposition{Result: encoding.ResultDeadLettered, Err: d.Err}
	case giveUp:
		if err := r.o.deadLetter(ctx, msg, d.Err, delivered); err != nil {
			log.Error().Err(err).AnErr("reason", d.Err).Msg("dead letter not stored; retrying the message")
			_ = msg.NakWithDelay(r.backoff(delivered))
			return Disposition{Result: encoding.ResultRetried, Err: d.Err}
		}
		log.Error().Err(d.Err).Uint64("deliveries", delivered).Msg("message dead-lettered")
		_ = msg.TermWithReason(d.Err.Error())
		return Disposition{Result: encoding.ResultDeadLettered, Err: d.Err}
	}
	delay := r.backoff(delivered)
	log.Warn().Err(d.Err).Uint64("deliveries", delivered).Dur("retry_in", delay).Msg("handling failed; will retry")
	_ = msg.NakWithDelay(delay)
	return Disposition{Result: encoding.ResultRetried, Err: d.Err}
}

// msgLog is the runner's logger with the message's subject and event id:
// made only for a line to write, not for every message.
func (r *runner) msgLog(msg jetstream.Msg) *zerolog.Logger {
	log := r.o.log.With().Str("subject", msg.Subject()).Logger()
	if id := msg.Headers().Get(streams.HeaderEventID); id != "" {
		log = log.With().Str("event_id", id).Logger()
	}
	return &log
}

// backoff is the delay before delivery n+1: retryDelay, doubling, capped.
func (r *runner) backoff(delivered uint64) time.Duration {
	return min(r.o.retryDelay<<min(delivered-1, 16), r.o.maxRetry)
}

// deadLetterTo returns a dead-letter function that stores a copy of the
// message, with why, on the consumer's dead-letter subject in SEAM_EVENTS.
func deadLetterTo(p publisher, consumer string) func(ctx context.Context, msg jetstream.Msg, reason error, delivered uint64) error {
	return func(ctx context.Context, msg jetstream.Msg, reason error, delivered uint64) error {
		h := nats.Header{}
		for k, v := range msg.Headers() {
			if k != jetstream.MsgIDHeader && k != jetstream.ExpectedStreamHeader {
				h[k] = v
			}
		}
		h.Set(streams.HeaderDeadLetterReason, reason.Error())
		h.Set(streams.HeaderDeadLetterDeliveries, strconv.FormatUint(delivered, 10))
		h.Set(streams.HeaderOriginalSubject, msg.Subject())
		if meta, err := msg.Metadata(); err == nil {
			h.Set(jetstream.MsgIDHeader, "dl:"+strconv.FormatUint(meta.Sequence.Stream, 10))
		}
		_, err := p.PublishMsg(ctx, &nats.Msg{Subject: streams.DeadLetterSubject(consumer), Data: msg.Data(), Header: h})
		return err
	}
}
