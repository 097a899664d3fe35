package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/encoding"
)

// handleEvent is the intake consumer's handler: one Seam event from
// SEAM_EVENTS. A failure-type event first waits out the order grace from
// the moment it was stored, in the stream (a delayed Nak), so that a
// success that occurred before it but arrives a little after still wins.
func (s *service) handleEvent(grace time.Duration) handler {
	return func(ctx context.Context, msg jetstream.Msg) Disposition {
		ev, err := encoding.ParseEvent(msg.Data())
		if err != nil {
			return Disposition{Err: err}
		}
		if grace > 0 {
			arrived := s.now()
			if meta, err := msg.Metadata(); err == nil {
				arrived = meta.Timestamp
			}
			if hold := encoding.HoldFor(ev, arrived, s.now(), grace); hold > 0 {
				return Disposition{Result: encoding.ResultHeld, Delay: hold}
			}
		}
		res, err := s.Apply(ctx, ev)
		return Disposition{Result: res, Err: err}
	}
}
