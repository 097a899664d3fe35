// Package store keeps the worker's state in the ENCODINGS KV bucket and is
// the only package that knows its key names. Every change is a
// compare-and-set on the key's revision, and every read is a leader read
// of one key (the bucket is created with direct gets off): nothing on the
// hot path lists keys, so a registration and an event always see each
// other's writes, on one server or on a cluster.
//
// Key layout (every part is a validated subject token):
//
//	enc.<encoding_id>               the record (encoding.Record, JSON); its revisions feed the outbox
//	tgt.<ws>.<kind>.<id>            the credential's or access method's encodings and kept events
//	                                (encoding.TargetState)
//	encoder.<ws>.<acs_encoder_id>   encodings started on that encoder (EncoderState)
//	idem.<sha256 of ws and key>     an Idempotency-Key's request and progress (Idempotency; per-key TTL)
//
// and in the bucket of its own streams.PendingBucket, with a history of one:
//
//	<ws>.<requested_ms>.<id>        present while the encoding is pending: the pending index, read
//	                                at start-up (headers only, the key says it all); a purge marker
//	                                with a TTL of a second replaces it when it settles, so reading
//	                                it costs the pending encodings, not the records
//
// Version 0.6.0 kept the index in the records' bucket as pend.<ws>.<requested_ms>.<id>;
// MigrateLegacyPending moves what is left there.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// KV is the part of jetstream.KeyValue the store uses.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// Stream is the part of the bucket's jetstream.Stream the store uses: a
// subject purge (it leaves no marker behind) and an ordered consumer.
type Stream interface {
	Purge(ctx context.Context, opts ...jetstream.StreamPurgeOpt) error
	OrderedConsumer(ctx context.Context, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error)
}

// ErrRevisionLimit reports a record change beyond streams.MaxRevisions: the
// bucket keeps no more history than that, so the outbox could skip one.
var ErrRevisionLimit = errors.New("record has reached its revision limit")

// casAttempts bounds a compare-and-set loop; each retry means another
// writer changed the key in between, so a handful is plenty.
const casAttempts = 16

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

func recordKey(id string) string { return "enc." + id }
func targetKey(t encoding.TargetRef) string {
	return "tgt." + t.WorkspaceID + "." + t.Kind + "." + t.ID
}
func encoderKey(ws, encoder string) string { return "encoder." + ws + "." + encoder }
func idemKey(ws, key string) string {
	sum := sha256.Sum256([]byte(ws + "\x00" + key))
	return "idem." + hex.EncodeToString(sum[:])
}

// RecordsSubject is the bucket-stream subject of every record: the outbox
// consumes it.
const RecordsSubject = "$KV." + streams.EncodingsBucket + ".enc.>"

// RecordID returns the encoding id of a record's bucket-stream subject, or
// false for any other subject.
func RecordID(subject string) (string, bool) {
	const prefix = "$KV." + streams.EncodingsBucket + ".enc."
	id, ok := strings.CutPrefix(subject, prefix)
	return id, ok && streams.ValidToken(id)
}

// conflict reports a lost compare-and-set: Create found the key, or Update
// found a newer revision (replicated streams report the former only as
// ErrKeyRevisionMismatch).
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// Store keeps records, target and encoder states, idempotency keys and
// the pending index.
type Store struct {
	kv     KV
	stream Stream
	index  Index
}

// New returns a store over bucket (stream is the bucket's stream) and the
// pending index.
func New(bucket KV, stream Stream, index Index) *Store {
	return &Store{kv: bucket, stream: stream, index: index}
}

// Get returns the record, or an error wrapping encoding.ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (encoding.Record, error) {
	r, err := s.GetRevision(ctx, id)
	return r.Record, err
}

// GetRevision is Get with the bucket revision the record was read at, for
// UpdateFrom to start from.
func (s *Store) GetRevision(ctx context.Context, id string) (Revision, error) {
	var r Revision
	rev, err := s.read(ctx, recordKey(id), &r.Record)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Revision{}, fmt.Errorf("%s: %w", id, encoding.ErrNotFound)
	}
	if err != nil {
		return Revision{}, err
	}
	r.KV = rev
	return r, nil
}

// Create stores rec as revision 1. If the record exists already (a replay
// of a registration), it returns the stored one and created=false.
func (s *Store) Create(ctx context.Context, rec encoding.Record) (stored encoding.Record, created bool, err error) {
	rec.Revision = 1
	b, err := json.Marshal(rec)
	if err != nil {
		return encoding.Record{}, false, err
	}
	_, err = s.kv.Create(ctx, recordKey(rec.EncodingID), b)
	if conflict(err) {
		stored, err = s.Get(ctx, rec.EncodingID)
		return stored, false, err
	}
	if err != nil {
		return encoding.Record{}, false, fmt.Errorf("create encoding %s: %w", rec.EncodingID, err)
	}
	return rec, true, nil
}

// Update applies fn to the current record and stores the result, one
// revision higher, with a compare-and-set on the KV revision fn saw,
// retrying when another writer got there first. fn returns changed=false
// to store nothing. Update returns the record as stored (or as it is, when
// unchanged).
func (s *Store) Update(ctx context.Context, id string, fn func(encoding.Record) (encoding.Record, bool)) (encoding.Record, bool, error) {
	return s.UpdateFrom(ctx, id, Revision{}, fn)
}

// Revision is a record as the bucket stored it, with the bucket's
// revision of that write (KV; 0 when unknown): UpdateFrom can start from
// it instead of reading the record.
type Revision struct {
	Record encoding.Record
	KV     uint64
}

// UpdateFrom is Update whose first attempt applies fn to from, when it is
// a known revision of the record, instead of reading it: only a write
// that lands is taken from it. If the record has changed since, the
// compare-and-set fails; if fn changes nothing, that is decided on a
// read, as are the attempts after the first.
func (s *Store) UpdateFrom(ctx context.Context, id string, from Revision, fn func(encoding.Record) (encoding.Record, bool)) (encoding.Record, bool, error) {
	if from.KV != 0 && from.Record.EncodingID == id {
		if next, changed := fn(from.Record); changed {
			stored, landed, err := s.updateAt(ctx, id, from.Record, from.KV, next)
			if landed || err != nil {
				return stored, landed, err
			}
		}
	}
	for range casAttempts {
		var rec encoding.Record
		rev, err := s.read(ctx, recordKey(id), &rec)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return encoding.Record{}, false, fmt.Errorf("%s: %w", id, encoding.ErrNotFound)
		}
		if err != nil {
			return encoding.Record{}, false, err
		}
		next, changed := fn(rec)
		if !changed {
			return rec, false, nil
		}
		stored, landed, err := s.updateAt(ctx, id, rec, rev, next)
		if landed || err != nil {
			return stored, landed, err
		}
	}
	return encoding.Record{}, false, fmt.Errorf("update encoding %s: still conflicting after %d attempts", id, casAttempts)
}

// updateAt stores next as the revision after rec, which the bucket holds
// at KV revision rev; landed=false (and no error) when another writer got
// there first.
func (s *Store) updateAt(ctx context.Context, id string, rec encoding.Record, rev uint64, next encoding.Record) (stored encoding.Record, landed bool, err error) {
	next.Revision = rec.Revision + 1
	if next.Revision > streams.MaxRevisions {
		return rec, false, fmt.Errorf("update encoding %s: %w (%d)", id, ErrRevisionLimit, streams.MaxRevisions)
	}
	b, err := json.Marshal(next)
	if err != nil {
		return encoding.Record{}, false, err
	}
	_, err = s.kv.Update(ctx, recordKey(id), b, rev)
	if conflict(err) {
		return encoding.Record{}, false, nil
	}
	if err != nil {
		return encoding.Record{}, false, fmt.Errorf("update encoding %s: %w", id, err)
	}
	return next, true, nil
}

// Target returns the state of a credential or access method (empty if it
// has none yet).
func (s *Store) Target(ctx context.Context, t encoding.TargetRef) (encoding.TargetState, error) {
	r, err := s.ReadTarget(ctx, t)
	return r.State, err
}

// TargetRead is a target's state as one read found it, and the revision
// it was read at: UpdateTargetFrom starts from it instead of reading the
// state again. The zero TargetRead is no read.
type TargetRead struct {
	State encoding.TargetState
	at    *casValue
}

// ReadTarget reads a target's state (empty if it has none yet).
func (s *Store) ReadTarget(ctx context.Context, t encoding.TargetRef) (TargetRead, error) {
	e, err := s.kv.Get(ctx, targetKey(t))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return TargetRead{at: &casValue{}}, nil
	case err != nil:
		return TargetRead{}, fmt.Errorf("get %s: %w", targetKey(t), err)
	}
	r := TargetRead{at: &casValue{cur: e.Value(), rev: e.Revision()}}
	if err := json.Unmarshal(e.Value(), &r.State); err != nil {
		return TargetRead{}, fmt.Errorf("decode target %s: %w", t, err)
	}
	return r, nil
}

// UpdateTarget applies fn to a target's state with a compare-and-set,
// retrying on a lost race; fn returns whether it changed anything, or an
// error to stop (returned as is). It returns the state as stored.
func (s *Store) UpdateTarget(ctx context.Context, t encoding.TargetRef, fn func(*encoding.TargetState) (bool, error)) (encoding.TargetState, error) {
	return s.UpdateTargetFrom(ctx, t, TargetRead{}, fn)
}

// UpdateTargetFrom is UpdateTarget whose first attempt applies fn to the
// state from (when it is a read) instead of reading it again: only a write
// that lands is taken from it. If the state has changed since, the
// compare-and-set fails; no write, or an error from fn, is decided on a
// read, as are the attempts after the first.
func (s *Store) UpdateTargetFrom(ctx context.Context, t encoding.TargetRef, from TargetRead, fn func(*encoding.TargetState) (bool, error)) (encoding.TargetState, error) {
	var st encoding.TargetState
	err := s.casFrom(ctx, targetKey(t), from.at, func(b []byte) ([]byte, error) {
		st = encoding.TargetState{}
		if b != nil {
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, fmt.Errorf("decode target %s: %w", t, err)
			}
		}
		changed, err := fn(&st)
		if err != nil || !changed {
			return nil, err
		}
		return json.Marshal(st)
	})
	return st, err
}

// EncoderState lists the encodings started on one encoder, newest last,
// so that acs_encoder.removed finds them with one read.
type EncoderState struct {
	Encodings []string `json:"encodings"`
}

// maxPerEncoder bounds EncoderState: an encoder is one device at a desk,
// and the oldest entries are long final.
const maxPerEncoder = 256

// Encoder returns the encodings started on an encoder.
func (s *Store) Encoder(ctx context.Context, ws, encoder string) (EncoderState, error) {
	var st EncoderState
	_, err := s.read(ctx, encoderKey(ws, encoder), &st)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return EncoderState{}, nil
	}
	return st, err
}

// AddToEncoder records that encodingID runs on encoder (once).
func (s *Store) AddToEncoder(ctx context.Context, ws, encoder, encodingID string) error {
	return s.cas(ctx, encoderKey(ws, encoder), func(b []byte) ([]byte, error) {
		var st EncoderState
		if b != nil {
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, fmt.Errorf("decode encoder %s: %w", encoder, err)
			}
		}
		for _, id := range st.Encodings {
			if id == encodingID {
				return nil, nil
			}
		}
		st.Encodings = append(st.Encodings, encodingID)
		if n := len(st.Encodings) - maxPerEncoder; n > 0 {
			st.Encodings = st.Encodings[n:]
		}
		return json.Marshal(st)
	})
}

// Idempotency is what an Idempotency-Key remembers: the encoding it
// created, the request's fingerprint, and how far the registration got.
type Idempotency struct {
	EncodingID  string `json:"encoding_id"`
	Fingerprint string `json:"fingerprint"`
	// EncodeSent is set before the encode call to Seam: a replay never
	// sends it again (a second encode could write a second card).
	EncodeSent bool `json:"encode_sent,omitempty"`
}

// Remember stores in for key unless the key is taken; it returns what the
// key holds and whether this call stored it.
func (s *Store) Remember(ctx context.Context, ws, key string, in Idempotency) (Idempotency, bool, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return Idempotency{}, false, err
	}
	_, err = s.kv.Create(ctx, idemKey(ws, key), b, jetstream.KeyTTL(IdempotencyTTL))
	if conflict(err) {
		var got Idempotency
		if _, err := s.read(ctx, idemKey(ws, key), &got); err != nil {
			return Idempotency{}, false, fmt.Errorf("read idempotency key: %w", err)
		}
		return got, false, nil
	}
	if err != nil {
		return Idempotency{}, false, fmt.Errorf("store idempotency key: %w", err)
	}
	return in, true, nil
}

// MarkEncodeSent records that the encode is about to be sent for key.
func (s *Store) MarkEncodeSent(ctx context.Context, ws, key string) error {
	return s.cas(ctx, idemKey(ws, key), func(b []byte) ([]byte, error) {
		var st Idempotency
		if b == nil {
			return nil, fmt.Errorf("idempotency key vanished: %w", encoding.ErrNotFound)
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, err
		}
		if st.EncodeSent {
			return nil, nil
		}
		st.EncodeSent = true
		return json.Marshal(st)
	})
}

// read gets key into v and returns its KV revision; a missing key is
// jetstream.ErrKeyNotFound.
func (s *Store) read(ctx context.Context, key string, v any) (uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("get %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

// casValue is a key's value as read (nil when absent) and its revision
// (0 when absent).
type casValue struct {
	cur []byte
	rev uint64
}

// cas runs a compare-and-set loop on key: fn gets the current value (nil
// when absent) and returns the new one, or nil to write nothing.
func (s *Store) cas(ctx context.Context, key string, fn func([]byte) ([]byte, error)) error {
	return s.casFrom(ctx, key, nil, fn)
}

// casFrom is cas whose first attempt applies fn to first, when it is not
// nil, instead of a read: only a write that lands is taken from it; no
// write, an error, or a lost race are decided on a read.
func (s *Store) casFrom(ctx context.Context, key string, first *casValue, fn func([]byte) ([]byte, error)) error {
	if first != nil {
		if next, err := fn(first.cur); err == nil && next != nil {
			if landed, err := s.write(ctx, key, first.rev, next); landed || err != nil {
				return err
			}
		}
	}
	for range casAttempts {
		e, err := s.kv.Get(ctx, key)
		var cur []byte
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return fmt.Errorf("get %s: %w", key, err)
		default:
			cur, rev = e.Value(), e.Revision()
		}
		next, err := fn(cur)
		if err != nil || next == nil {
			return err
		}
		if landed, err := s.write(ctx, key, rev, next); landed || err != nil {
			return err
		}
	}
	return fmt.Errorf("write %s: still conflicting after %d attempts", key, casAttempts)
}

// write stores next under key if the key is still at revision rev (0:
// absent); landed=false (and no error) when another writer got there
// first.
func (s *Store) write(ctx context.Context, key string, rev uint64, next []byte) (landed bool, err error) {
	if rev == 0 {
		_, err = s.kv.Create(ctx, key, next)
	} else {
		_, err = s.kv.Update(ctx, key, next, rev)
	}
	if conflict(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("write %s: %w", key, err)
	}
	return true, nil
}

// WatchRecords sends every record revision stored from now on, until ctx
// ends (one ordered consumer: a process needs one, whatever it serves).
func (s *Store) WatchRecords(ctx context.Context) (<-chan Revision, error) {
	w, err := s.kv.Watch(ctx, recordKey("*"), jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("watch encodings: %w", err)
	}
	out := make(chan Revision, 256)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				var rec encoding.Record
				if json.Unmarshal(e.Value(), &rec) != nil {
					continue
				}
				select {
				case out <- Revision{Record: rec, KV: e.Revision()}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
