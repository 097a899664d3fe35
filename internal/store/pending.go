package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// Index is the pending index: the stream behind the bucket
// streams.PendingBucket, and what publishes to it.
type Index struct {
	Publisher Publisher
	Stream    Stream
}

// Publisher is the part of jetstream.JetStream the pending index writes
// with: a key's entry and its removal are plain publishes.
type Publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// pendingPrefix is the subject prefix of the pending index;
// legacyPendingPrefix is where version 0.6.0 kept it, in the records'
// bucket.
const (
	pendingPrefix       = "$KV." + streams.PendingBucket + "."
	legacyPendingPrefix = "$KV." + streams.EncodingsBucket + ".pend."
)

// Pending is one entry of the pending index.
type Pending struct {
	EncodingID  string
	WorkspaceID string
	RequestedAt time.Time
}

// PendingOf is the pending-index entry of rec.
func PendingOf(rec encoding.Record) Pending {
	return Pending{EncodingID: rec.EncodingID, WorkspaceID: rec.WorkspaceID, RequestedAt: rec.RequestedAt}
}

func (p Pending) key() string {
	return p.WorkspaceID + "." + strconv.FormatInt(p.RequestedAt.UnixMilli(), 10) + "." + p.EncodingID
}

// PendingSubject is the index entry's subject in the bucket's stream
// (benchmarks write the index straight into it).
func PendingSubject(p Pending) string { return pendingPrefix + p.key() }

// AddPending enters a pending record in the pending index. Everything it
// holds is in the key, so the index is read from subject names alone.
func (s *Store) AddPending(ctx context.Context, rec encoding.Record) error {
	if _, err := s.index.Publisher.PublishMsg(ctx, &nats.Msg{Subject: PendingSubject(PendingOf(rec))}); err != nil {
		return fmt.Errorf("index pending %s: %w", rec.EncodingID, err)
	}
	return nil
}

// RemovePending takes an encoding out of the pending index; removing one
// that is not there is not an error. With p.RequestedAt it names the key:
// one publish of a KV delete marker, which the bucket's history of one
// makes the key's only message (the server drops the entry as a limit,
// without the tombstone a purge writes) and which expires after
// streams.PendingMarkerTTL, so nothing stays behind for a start-up to
// read. Without it (a registration that never stored its record) a
// stream purge matches the request time with a wildcard, which costs the
// server a walk of the workspace's entries, so it is for repairs only.
func (s *Store) RemovePending(ctx context.Context, p Pending) error {
	var err error
	if p.RequestedAt.IsZero() {
		err = s.index.Stream.Purge(ctx, jetstream.WithPurgeSubject(pendingPrefix+p.WorkspaceID+".*."+p.EncodingID))
	} else {
		marker := &nats.Msg{Subject: PendingSubject(p), Header: nats.Header{streams.HeaderKVOperation: {streams.KVDelete}}}
		_, err = s.index.Publisher.PublishMsg(ctx, marker, jetstream.WithMsgTTL(streams.PendingMarkerTTL))
	}
	if err != nil {
		return fmt.Errorf("unindex pending %s: %w", p.EncodingID, err)
	}
	return nil
}

// PendingIndex reads the whole pending index once; its cost is the
// pending encodings, not the records.
func (s *Store) PendingIndex(ctx context.Context) ([]Pending, error) {
	entries, err := readIndex(ctx, s.index.Stream, pendingPrefix, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("read the pending index: %w", err)
	}
	return entries, nil
}

// MigrateLegacyPending moves the pending index that version 0.6.0 kept in
// the records' bucket into its own, for the encodings still pending, and
// purges it there; it returns how many entries it moved. Once done it
// costs one empty read. Every start runs it, so that the entries a worker
// of the older version adds during a rolling upgrade move at the next.
func (s *Store) MigrateLegacyPending(ctx context.Context) (int, error) {
	legacy, err := readIndex(ctx, s.stream, legacyPendingPrefix, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{legacyPendingPrefix + ">"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("read the 0.6.0 pending index: %w", err)
	}
	moved := 0
	for _, p := range legacy {
		rec, err := s.Get(ctx, p.EncodingID)
		switch {
		case errors.Is(err, encoding.ErrNotFound):
		case err != nil:
			return moved, err
		case !rec.Status.Terminal():
			if err := s.AddPending(ctx, rec); err != nil {
				return moved, err
			}
			moved++
		}
		subj := legacyPendingPrefix + p.key()
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return moved, fmt.Errorf("purge %s: %w", subj, err)
		}
	}
	return moved, nil
}

// indexIdle ends the read of an index when nothing more comes: the count
// of messages still to come that the server gives with each one can
// include entries removed meanwhile (a settle on another worker), and then
// never reaches zero.
const indexIdle = 500 * time.Millisecond

// readIndex reads the entries <ws>.<requested_ms>.<id> under prefix in st
// through one ordered consumer configured by cfg (headers only), skipping
// purge and delete markers. A KV watch would do the same but waits for
// ever for entries removed while it reads. In the index's own bucket every message is the
// last of its key (a history of one), so the whole stream is read, with
// no filter: 0.3 s for 50,000 entries, where a filtered consumer on a
// stream of one message per subject takes 2 s (nats-server 2.15). The
// 0.6.0 index, among the records' history, is read filtered, last message
// per subject.
func readIndex(ctx context.Context, st Stream, prefix string, cfg jetstream.OrderedConsumerConfig) ([]Pending, error) {
	cfg.HeadersOnly = true
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var out []Pending
	idle := false
	for {
		// What is there now, at once; only when that is nothing while the
		// server still counts some, one wait for stragglers.
		var batch jetstream.MessageBatch
		if idle {
			batch, err = cons.Fetch(1000, jetstream.FetchMaxWait(indexIdle))
		} else {
			batch, err = cons.FetchNoWait(1000)
		}
		if err != nil {
			return nil, err
		}
		n, remaining := 0, uint64(1)
		for m := range batch.Messages() {
			n++
			if meta, err := m.Metadata(); err == nil {
				remaining = meta.NumPending
			}
			if p, ok := parseIndexEntry(m, prefix); ok {
				out = append(out, p)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		switch {
		case n > 0 && remaining == 0, n == 0 && idle:
			return out, nil
		case n == 0:
			if info := cons.CachedInfo(); info != nil && info.NumPending == 0 && info.NumAckPending == 0 {
				return out, nil // the server has nothing for it: an empty index
			}
			idle = true
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("ended early: %w", err)
		}
	}
}

func parseIndexEntry(m jetstream.Msg, prefix string) (Pending, bool) {
	if m.Headers().Get(streams.HeaderKVOperation) != "" {
		return Pending{}, false // a marker: the entry is gone
	}
	parts := strings.Split(strings.TrimPrefix(m.Subject(), prefix), ".")
	if len(parts) != 3 {
		return Pending{}, false
	}
	ms, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return Pending{}, false
	}
	return Pending{WorkspaceID: parts[0], RequestedAt: time.UnixMilli(ms).UTC(), EncodingID: parts[2]}, true
}
