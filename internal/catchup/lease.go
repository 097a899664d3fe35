package catchup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/streams"
)

// leaseKey is the key of the catch-up lease in the CATCHUP bucket.
const leaseKey = "lease"

// lease is the right to run the catch-up: a key created with a TTL by one
// holder and renewed by that holder alone, each renewal a compare-and-set
// on its revision carrying the TTL again (a KV Update would write it
// without one, so that it never expired). When the holder stops renewing
// it, the key expires and the next Create wins.
type lease struct {
	kv     jetstream.KeyValue
	js     publisher // renewals: a publish on the key's subject
	holder string
	ttl    time.Duration
	rev    uint64 // of our lease; 0 when not held
}

// leaseSubject is the lease key's subject in the bucket's stream.
const leaseSubject = "$KV." + streams.CatchupBucket + "." + leaseKey

// hold renews the lease if held, or takes it if free. It reports whether
// this process holds it now.
func (l *lease) hold(ctx context.Context) (bool, error) {
	if l.rev != 0 {
		ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: leaseSubject, Data: []byte(l.holder)},
			jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(l.ttl))
		if err == nil {
			l.rev = ack.Sequence
			return true, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) {
			return false, fmt.Errorf("renew the catch-up lease: %w", err)
		}
		l.rev = 0 // expired and taken, or gone: try to take it again
	}
	rev, err := l.kv.Create(ctx, leaseKey, []byte(l.holder), jetstream.KeyTTL(l.ttl))
	switch {
	case err == nil:
		l.rev = rev
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists):
		return false, nil
	}
	return false, fmt.Errorf("take the catch-up lease: %w", err)
}

// release deletes the lease if held, so another worker need not wait for
// it to expire.
func (l *lease) release(ctx context.Context) error {
	if l.rev == 0 {
		return nil
	}
	err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev))
	l.rev = 0
	return err
}
