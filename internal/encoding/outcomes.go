package encoding

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/streams"
)

// publisher is the one method of jetstream.JetStream outcomes need.
type publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// publishOutcome publishes rec on encodings.<workspace_id>.<status>. The
// message id <encoding_id>:<status> makes a repeat (a retry after a crash
// between the KV update and the publish) a no-op within the window.
func publishOutcome(ctx context.Context, p publisher, rec Record) error {
	return publishOutcomeID(ctx, p, rec, rec.EncodingID+":"+string(rec.Status))
}

// publishOutcomeID publishes rec with the given message id: an update of a
// final record (the card number arriving later) has its own id.
func publishOutcomeID(ctx context.Context, p publisher, rec Record, msgID string) error {
	subj, err := streams.OutcomeSubject(rec.WorkspaceID, string(rec.Status))
	if err != nil {
		return err
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{
		jetstream.MsgIDHeader:          {msgID},
		jetstream.ExpectedStreamHeader: {streams.OutcomesStream},
	}}
	if _, err := p.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish outcome %s %s: %w", rec.EncodingID, rec.Status, err)
	}
	return nil
}
