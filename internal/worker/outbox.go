package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

// publisher is what the worker publishes with: timers and dead letters
// (PublishMsg) and outcomes (PublishMsgAsync, pipelined in order).
type publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// outbox is the one publisher of outcomes: it consumes every stored
// revision of every record from the bucket's own stream (the KV change
// log) and publishes it to ENCODING_EVENTS as
// encodings.<workspace_id>.<status>, message id <encoding_id>:<revision>.
// A state change and its outcome are therefore one write: a crash between
// them only delays the outcome until the consumer redelivers the revision,
// and the message id makes the repeat a no-op inside the stream's
// duplicate window. The consumer is pinned to one worker at a time, which
// publishes in the bucket's order, so a record's revisions arrive in order.
type outbox struct {
	cons     jetstream.Consumer
	p        publisher
	metrics  *metrics
	log      zerolog.Logger
	cc       jetstream.ConsumeContext
	inFlight chan pending
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopped  chan struct{}
	// unpin releases the pin at stop, so another worker takes over the
	// outbox at once instead of after the pinned TTL. It is done whether or
	// not this worker holds the pin (which the client cannot tell until it
	// is given a message): a worker that loses the pin this way is pinned
	// again at its next pull.
	unpin func(ctx context.Context) error
}

type pending struct {
	msg jetstream.Msg
	f   jetstream.PubAckFuture
	rec encoding.Record
	// due is when its PubAck is given up on: counted from the publish, so
	// that PubAcks lost together (a node going away) time out together,
	// not one after another.
	due time.Time
}

// outboxAckTimeout bounds the wait for one outcome's PubAck, from its
// publish; then the revision is redelivered and published again
// (deduplicated).
const outboxAckTimeout = 5 * time.Second

// outboxWindow is how many outcomes are published before their PubAcks
// arrive: the pipeline that keeps one ordered publisher fast.
const outboxWindow = 256

func (o *outbox) start() error {
	o.inFlight = make(chan pending, outboxWindow)
	o.wg.Add(1)
	go o.acks()
	cc, err := o.cons.Consume(o.publish,
		jetstream.PullPriorityGroup(streams.OutboxGroup),
		jetstream.PullMaxMessages(outboxWindow),
		jetstream.PullHeartbeat(consumeHeartbeat),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			o.log.Debug().Err(err).Msg("consume outbox")
		}))
	if err != nil {
		close(o.inFlight)
		o.wg.Wait()
		return fmt.Errorf("consume %s: %w", streams.OutboxConsumer, err)
	}
	o.cc = cc
	return nil
}

// publish runs in the consume goroutine, one revision at a time, in the
// bucket's order.
func (o *outbox) publish(msg jetstream.Msg) {
	if op := msg.Headers().Get(streams.HeaderKVOperation); op != "" {
		_ = msg.Ack() // a delete, purge or expiry marker: no outcome
		return
	}
	id, ok := store.RecordID(msg.Subject())
	var rec encoding.Record
	if !ok || json.Unmarshal(msg.Data(), &rec) != nil || rec.EncodingID != id || rec.Revision == 0 {
		o.log.Error().Str("subject", msg.Subject()).Msg("outbox: not an encoding record; skipped")
		_ = msg.Term()
		return
	}
	subj, err := streams.OutcomeSubject(rec.WorkspaceID, string(rec.Status))
	if err != nil {
		o.log.Error().Err(err).Str("encoding_id", id).Msg("outbox: record has no valid subject; skipped")
		_ = msg.Term()
		return
	}
	out := &nats.Msg{Subject: subj, Data: msg.Data(), Header: nats.Header{
		jetstream.MsgIDHeader:          {OutcomeMsgID(rec)},
		jetstream.ExpectedStreamHeader: {streams.OutcomesStream},
	}}
	f, err := o.p.PublishMsgAsync(out)
	if err != nil {
		o.failed(msg, rec, err)
		return
	}
	o.inFlight <- pending{msg: msg, f: f, rec: rec, due: time.Now().Add(outboxAckTimeout)}
}

// OutcomeMsgID is the JetStream message id of a record revision's outcome.
func OutcomeMsgID(rec encoding.Record) string {
	return rec.EncodingID + ":" + strconv.FormatUint(rec.Revision, 10)
}

// acks waits for each outcome's PubAck, in order, and only then
// acknowledges the revision.
func (o *outbox) acks() {
	defer o.wg.Done()
	t := time.NewTimer(outboxAckTimeout)
	defer t.Stop()
	for p := range o.inFlight {
		t.Reset(time.Until(p.due))
		select {
		case ack := <-p.f.Ok():
			_ = p.msg.Ack()
			if !ack.Duplicate {
				o.metrics.outcomes.WithLabelValues(string(p.rec.Status)).Inc()
			}
		case err := <-p.f.Err():
			o.failed(p.msg, p.rec, err)
		case <-t.C:
			o.failed(p.msg, p.rec, fmt.Errorf("no PubAck within %s", outboxAckTimeout))
		}
	}
}

func (o *outbox) failed(msg jetstream.Msg, rec encoding.Record, err error) {
	o.metrics.outboxErrors.Inc()
	o.log.Warn().Err(err).Str("encoding_id", rec.EncodingID).Uint64("revision", rec.Revision).
		Msg("outcome not published; the revision will be published again")
	_ = msg.NakWithDelay(time.Second)
}

// stop stops pulling and waits for the outcomes in flight, or ctx.
func (o *outbox) stop(ctx context.Context) error {
	if o.cc == nil {
		return nil
	}
	o.stopOnce.Do(func() {
		o.stopped = make(chan struct{})
		o.cc.Drain()
		go func() {
			<-o.cc.Closed()
			close(o.inFlight)
			o.wg.Wait()
			close(o.stopped)
		}()
	})
	select {
	case <-o.stopped:
		if o.unpin != nil {
			if err := o.unpin(ctx); err != nil {
				o.log.Debug().Err(err).Msg("outbox: unpin at stop")
			}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("outbox drain: %w", ctx.Err())
	}
}
