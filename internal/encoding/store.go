package encoding

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// kv is the part of jetstream.KeyValue the store uses.
type kv interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
	Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error
	ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error)
	Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
	WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// ErrNotFound reports an encoding id with no record.
var ErrNotFound = errors.New("encoding not found")

// OpenEncodingError reports that the credential or access method already has
// a pending encoding; EncodingID is that encoding.
type OpenEncodingError struct {
	EncodingID string
}

func (e *OpenEncodingError) Error() string {
	return "an encoding is already pending for this credential: " + e.EncodingID
}

// Key layout of ENCODINGS (every part is a validated token):
//
//	enc.<encoding_id>                          the record (JSON)
//	idx.<ws>.cred.<acs_credential_id>          → encoding id (the latest)
//	idx.<ws>.am.<access_method_id>             → encoding id (the latest)
//	idx.<ws>.aa.<action_attempt_id>            → encoding id
//	idx.<ws>.encoder.<acs_encoder_id>.<enc_id> present while that encoding is pending
//	early.<ws>.<kind>.<id>.<event_id>.<type>   an event that came first (per-key TTL);
//	                                           the type is in the key so an expiry marker names it
//	idem.<sha256 of workspace and key>         → encoding id
func recordKey(id string) string             { return "enc." + id }
func targetKey(ws, kind, id string) string   { return "idx." + ws + "." + kind + "." + id }
func attemptKey(ws, id string) string        { return "idx." + ws + ".aa." + id }
func encoderKey(ws, enc, id string) string   { return "idx." + ws + ".encoder." + enc + "." + id }
func earlyPrefix(ws, kind, id string) string { return "early." + ws + "." + kind + "." + id }
func earlyKey(ev Event, kind, id string) string {
	return earlyPrefix(ev.WorkspaceID, kind, id) + "." + ev.EventID + "." + ev.EventType
}
func idemKey(ws, key string) string {
	sum := sha256.Sum256([]byte(ws + "\x00" + key))
	return "idem." + hex.EncodeToString(sum[:])
}

// casAttempts bounds a compare-and-set loop; each retry means another
// writer changed the key in between, so a handful is plenty.
const casAttempts = 16

// conflict reports a lost compare-and-set: Create found the key, or Update
// found a newer revision (replicated streams report the latter only as
// ErrKeyRevisionMismatch).
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// Store keeps records and indexes in the ENCODINGS bucket.
type Store struct {
	kv       kv
	earlyTTL time.Duration
}

// NewStore returns a store over bucket; events that arrive before their
// encoding is registered are kept for earlyTTL.
func NewStore(bucket kv, earlyTTL time.Duration) *Store {
	return &Store{kv: bucket, earlyTTL: earlyTTL}
}

// Get returns the record and its revision, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Record, uint64, error) {
	e, err := s.kv.Get(ctx, recordKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("get encoding %s: %w", id, err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, 0, fmt.Errorf("decode encoding %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// Update applies fn to the current record and stores the result with a
// compare-and-set on the revision fn saw, retrying when another writer got
// there first. fn returns changed=false to store nothing. It returns the
// record as stored (or as it was, when unchanged).
func (s *Store) Update(ctx context.Context, id string, fn func(Record) (Record, bool)) (Record, bool, error) {
	for range casAttempts {
		rec, rev, err := s.Get(ctx, id)
		if err != nil {
			return Record{}, false, err
		}
		next, changed := fn(rec)
		if !changed {
			return rec, false, nil
		}
		b, err := json.Marshal(next)
		if err != nil {
			return Record{}, false, err
		}
		_, err = s.kv.Update(ctx, recordKey(id), b, rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // revision mismatch: recompute from the new state
		}
		if err != nil {
			return Record{}, false, fmt.Errorf("update encoding %s: %w", id, err)
		}
		return next, true, nil
	}
	return Record{}, false, fmt.Errorf("update encoding %s: still conflicting after %d attempts", id, casAttempts)
}

// Register stores a new pending record and makes it the open encoding of its
// credential (or access method). It fails with *OpenEncodingError if another
// encoding is pending for it. The record is written before the index claim,
// so an index never points to a record that does not exist yet.
func (s *Store) Register(ctx context.Context, rec Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.kv.Create(ctx, recordKey(rec.EncodingID), b); err != nil {
		return fmt.Errorf("create encoding %s: %w", rec.EncodingID, err)
	}
	// The encoder index comes before the claim, so an encoder removal
	// handled once the encoding is visible always finds it.
	undo := func() {
		bg := context.WithoutCancel(ctx)
		_ = s.kv.Delete(bg, encoderKey(rec.WorkspaceID, rec.AcsEncoderID, rec.EncodingID))
		_ = s.kv.Delete(bg, recordKey(rec.EncodingID))
	}
	if err := s.put(ctx, encoderKey(rec.WorkspaceID, rec.AcsEncoderID, rec.EncodingID), rec.EncodingID); err != nil {
		undo()
		return err
	}
	kind, id := rec.target()
	if err := s.claim(ctx, targetKey(rec.WorkspaceID, kind, id), rec.EncodingID); err != nil {
		undo() // nothing points at the record
		return err
	}
	if rec.ActionAttemptID != "" {
		if err := s.put(ctx, attemptKey(rec.WorkspaceID, rec.ActionAttemptID), rec.EncodingID); err != nil {
			return err
		}
	}
	return nil
}

// claim points key at encID unless it points at a pending encoding.
func (s *Store) claim(ctx context.Context, key, encID string) error {
	for range casAttempts {
		e, err := s.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			_, err = s.kv.Create(ctx, key, []byte(encID))
			if conflict(err) {
				continue
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("read index %s: %w", key, err)
		}
		other := string(e.Value())
		rec, _, err := s.Get(ctx, other)
		switch {
		case err == nil && !rec.Status.Terminal():
			return &OpenEncodingError{EncodingID: other}
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		_, err = s.kv.Update(ctx, key, []byte(encID), e.Revision())
		if conflict(err) {
			continue
		}
		return err
	}
	return fmt.Errorf("claim index %s: still conflicting after %d attempts", key, casAttempts)
}

// put writes an index key, overwriting whatever was there.
func (s *Store) put(ctx context.Context, key, value string) error {
	for range casAttempts {
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.kv.Create(ctx, key, []byte(value))
		case err == nil:
			_, err = s.kv.Update(ctx, key, []byte(value), e.Revision())
		}
		if conflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write index %s: %w", key, err)
		}
		return nil
	}
	return fmt.Errorf("write index %s: still conflicting", key)
}

// Lookup returns the id of the latest encoding for a credential or access
// method, or ErrNotFound.
func (s *Store) Lookup(ctx context.Context, ws, kind, id string) (string, error) {
	e, err := s.kv.Get(ctx, targetKey(ws, kind, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read index: %w", err)
	}
	return string(e.Value()), nil
}

// PendingOnEncoder returns the ids of pending encodings on an encoder.
func (s *Store) PendingOnEncoder(ctx context.Context, ws, encoder string) ([]string, error) {
	prefix := "idx." + ws + ".encoder." + encoder + "."
	return s.keys(ctx, prefix+"*", prefix)
}

// Resolved removes the index keys that only matter while rec is pending.
func (s *Store) Resolved(ctx context.Context, rec Record) error {
	err := s.kv.Delete(ctx, encoderKey(rec.WorkspaceID, rec.AcsEncoderID, rec.EncodingID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// KeepEarly stores ev until its encoding is registered or earlyTTL passes.
// Keeping the same event twice is not an error.
func (s *Store) KeepEarly(ctx context.Context, ev Event, kind, id string) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, earlyKey(ev, kind, id), b, jetstream.KeyTTL(s.earlyTTL))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("keep early event %s: %w", ev.EventID, err)
	}
	return nil
}

// Early returns the events kept for a credential or access method, oldest
// first.
func (s *Store) Early(ctx context.Context, ws, kind, id string) ([]Event, error) {
	prefix := earlyPrefix(ws, kind, id) + "."
	suffixes, err := s.keys(ctx, prefix+">", prefix)
	if err != nil {
		return nil, err
	}
	var evs []Event
	for _, suffix := range suffixes {
		e, err := s.kv.Get(ctx, prefix+suffix)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, err
		}
		var ev Event
		if err := json.Unmarshal(e.Value(), &ev); err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	slices.SortFunc(evs, func(a, b Event) int { return a.OccurredAt.Compare(b.OccurredAt) })
	return evs, nil
}

// ForgetEarly removes a kept event once it has been applied. It purges: a
// delete would leave a tombstone whose expiry the server marks like a TTL
// expiry, and the event would later be counted unmatched.
func (s *Store) ForgetEarly(ctx context.Context, ev Event, kind, id string) error {
	err := s.kv.Purge(ctx, earlyKey(ev, kind, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

// keys lists keys matching filter, with trim cut from the front.
func (s *Store) keys(ctx context.Context, filter, trim string) ([]string, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", filter, err)
	}
	defer lister.Stop()
	var out []string
	for k := range lister.Keys() {
		out = append(out, k[len(trim):])
	}
	return out, nil
}

// Idempotent returns the encoding id stored for an Idempotency-Key, or "".
func (s *Store) Idempotent(ctx context.Context, ws, key string) (string, error) {
	e, err := s.kv.Get(ctx, idemKey(ws, key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

// idempotencyTTL is how long an Idempotency-Key is remembered.
const idempotencyTTL = 24 * time.Hour

// RememberIdempotent stores encID for key (for a day); if the key is already
// taken it returns the encoding id stored first.
func (s *Store) RememberIdempotent(ctx context.Context, ws, key, encID string) (string, error) {
	_, err := s.kv.Create(ctx, idemKey(ws, key), []byte(encID), jetstream.KeyTTL(idempotencyTTL))
	if errors.Is(err, jetstream.ErrKeyExists) {
		return s.Idempotent(ctx, ws, key)
	}
	if err != nil {
		return "", err
	}
	return encID, nil
}
