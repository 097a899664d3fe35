package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

const ws = "ws1"

func newStore(t testing.TB) *store.Store {
	t.Helper()
	s, _ := newStoreJS(t)
	return s
}

// newStoreJS is newStore with the client it is on.
func newStoreJS(t testing.TB) (*store.Store, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	owned, err := streams.EnsureWorker(t.Context(), js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	st, err := js.Stream(t.Context(), streams.BucketStream)
	require.NoError(t, err)
	index, err := js.Stream(t.Context(), streams.PendingStream)
	require.NoError(t, err)
	return store.New(owned.Bucket, st, store.Index{Publisher: js, Stream: index}), js
}

func pending(id string) encoding.Record {
	now := time.Now().UTC()
	return encoding.Record{EncodingID: id, WorkspaceID: ws, AcsEncoderID: "enc1", AcsCredentialID: "cred-" + id,
		Status: encoding.StatusPending, RequestedAt: now, Deadline: now.Add(time.Minute)}
}

// Create is revision 1 and a replay of it returns the stored record; every
// Update adds exactly one revision, however many writers race.
func TestRecordRevisions(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	rec, created, err := s.Create(ctx, pending("e1"))
	require.NoError(t, err)
	require.True(t, created)
	require.EqualValues(t, 1, rec.Revision)
	again, created, err := s.Create(ctx, pending("e1"))
	require.NoError(t, err)
	require.False(t, created, "a replay finds the record")
	require.Equal(t, rec.RequestedAt, again.RequestedAt, "and keeps the first one")

	const writers, each = 4, 5
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_, changed, err := s.Update(context.Background(), "e1", func(r encoding.Record) (encoding.Record, bool) {
					r.CardNumber = fmt.Sprint(w, i)
					return r, true
				})
				require.NoError(t, err)
				require.True(t, changed)
			}
		})
	}
	wg.Wait()
	got, err := s.Get(ctx, "e1")
	require.NoError(t, err)
	require.EqualValues(t, 1+writers*each, got.Revision, "no update lost, none counted twice")

	_, changed, err := s.Update(ctx, "e1", func(r encoding.Record) (encoding.Record, bool) { return r, false })
	require.NoError(t, err)
	require.False(t, changed)
	_, err = s.Get(ctx, "missing")
	require.ErrorIs(t, err, encoding.ErrNotFound)
}

// A record stops at streams.MaxRevisions: the bucket keeps no more.
func TestRevisionLimit(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	_, _, err := s.Create(ctx, pending("e1"))
	require.NoError(t, err)
	bump := func(r encoding.Record) (encoding.Record, bool) {
		r.Deadline = r.Deadline.Add(time.Second)
		return r, true
	}
	for range streams.MaxRevisions - 1 {
		_, _, err := s.Update(ctx, "e1", bump)
		require.NoError(t, err)
	}
	_, _, err = s.Update(ctx, "e1", bump)
	require.ErrorIs(t, err, store.ErrRevisionLimit)
}

// Claims racing on one target: every claim lands, none overwrites another
// (compare-and-set on one key, leader reads).
func TestTargetClaimsRace(t *testing.T) {
	s := newStore(t)
	target := encoding.TargetRef{WorkspaceID: ws, Kind: encoding.KindCredential, ID: "c1"}
	const n = 12
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateTarget(context.Background(), target, func(st *encoding.TargetState) (bool, error) {
				st.AddClaim(encoding.Claim{EncodingID: fmt.Sprint("e", i), RequestedAt: time.Now()})
				return true, nil
			})
			require.NoError(t, err)
		})
	}
	wg.Wait()
	st, err := s.Target(t.Context(), target)
	require.NoError(t, err)
	require.Len(t, st.Encodings, n)
	for i := range n {
		require.True(t, st.Has(fmt.Sprint("e", i)))
	}
}

// UpdateFrom starts from a revision the watch delivered: from the current
// one its write lands; from a stale one nothing written since is lost, and
// a "no change" judged on the stale one is judged again on a read.
func TestUpdateFromARevision(t *testing.T) {
	attempt := func(id string) func(encoding.Record) (encoding.Record, bool) {
		return func(r encoding.Record) (encoding.Record, bool) {
			r.ActionAttemptID = id
			return r, true
		}
	}
	for _, tc := range []struct {
		name string
		// since writes after the revision UpdateFrom starts from.
		since func(r encoding.Record) (encoding.Record, bool)
		fn    func(r encoding.Record) (encoding.Record, bool)
		want  encoding.Record // the fields checked
	}{
		{"current", nil, attempt("mine"), encoding.Record{Revision: 2, ActionAttemptID: "mine"}},
		{"stale: the write since is kept", attempt("other"),
			func(r encoding.Record) (encoding.Record, bool) {
				r.Deadline = r.Deadline.Add(time.Hour)
				return r, true
			}, encoding.Record{Revision: 3, ActionAttemptID: "other"}},
		{"stale: no change on it is judged again", attempt("other"),
			func(r encoding.Record) (encoding.Record, bool) {
				if r.ActionAttemptID == "" {
					return r, false // true of the stale revision only
				}
				r.ActionAttemptID += "+mine"
				return r, true
			}, encoding.Record{Revision: 3, ActionAttemptID: "other+mine"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			revs, err := s.WatchRecords(ctx)
			require.NoError(t, err)
			_, _, err = s.Create(ctx, pending("e1"))
			require.NoError(t, err)
			from := <-revs
			require.EqualValues(t, 1, from.Record.Revision)
			require.NotZero(t, from.KV)
			if tc.since != nil {
				_, _, err := s.Update(ctx, "e1", tc.since)
				require.NoError(t, err)
			}

			got, changed, err := s.UpdateFrom(ctx, "e1", from, tc.fn)
			require.NoError(t, err)
			require.True(t, changed)
			stored, err := s.Get(ctx, "e1")
			require.NoError(t, err)
			for _, r := range []encoding.Record{got, stored} {
				require.Equal(t, tc.want.Revision, r.Revision)
				require.Equal(t, tc.want.ActionAttemptID, r.ActionAttemptID)
			}
		})
	}
}

// UpdateTargetFrom with a read that another writer has overtaken loses
// nothing: its first compare-and-set fails and the next attempt reads.
func TestUpdateTargetFromAStaleRead(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	claim := func(id string) func(*encoding.TargetState) (bool, error) {
		return func(st *encoding.TargetState) (bool, error) {
			st.AddClaim(encoding.Claim{EncodingID: id, RequestedAt: at})
			return true, nil
		}
	}
	for _, tc := range []struct {
		name   string
		before []string // claims stored before the read
	}{
		{"absent when read, created since", nil},
		{"read at a revision, updated since", []string{"e0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ctx := t.Context()
			target := encoding.TargetRef{WorkspaceID: ws, Kind: encoding.KindCredential, ID: "c1"}
			for _, id := range tc.before {
				_, err := s.UpdateTarget(ctx, target, claim(id))
				require.NoError(t, err)
			}
			read, err := s.ReadTarget(ctx, target)
			require.NoError(t, err)
			require.Len(t, read.State.Encodings, len(tc.before))
			_, err = s.UpdateTarget(ctx, target, claim("other"))
			require.NoError(t, err)

			st, err := s.UpdateTargetFrom(ctx, target, read, claim("mine"))
			require.NoError(t, err)
			stored, err := s.Target(ctx, target)
			require.NoError(t, err)
			require.Equal(t, stored, st)
			for _, id := range append(tc.before, "other", "mine") {
				require.True(t, stored.Has(id), id)
			}
		})
	}
}

// A failing step stops the write and is returned; nothing is stored, and
// running the step again (a replay) completes it once.
func TestTargetPartialFailureAndReplay(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	target := encoding.TargetRef{WorkspaceID: ws, Kind: encoding.KindAccessMethod, ID: "am1"}
	boom := fmt.Errorf("refused")
	_, err := s.UpdateTarget(ctx, target, func(st *encoding.TargetState) (bool, error) {
		st.AddClaim(encoding.Claim{EncodingID: "e1"})
		return true, boom
	})
	require.ErrorIs(t, err, boom)
	st, err := s.Target(ctx, target)
	require.NoError(t, err)
	require.Empty(t, st.Encodings, "nothing stored")
	claim := func(st *encoding.TargetState) (bool, error) {
		if st.Has("e1") {
			return false, nil
		}
		st.AddClaim(encoding.Claim{EncodingID: "e1"})
		return true, nil
	}
	for range 2 {
		_, err = s.UpdateTarget(ctx, target, claim)
		require.NoError(t, err)
	}
	st, err = s.Target(ctx, target)
	require.NoError(t, err)
	require.Len(t, st.Encodings, 1)

	for range 2 {
		require.NoError(t, s.AddToEncoder(ctx, ws, "enc1", "e1"))
	}
	es, err := s.Encoder(ctx, ws, "enc1")
	require.NoError(t, err)
	require.Equal(t, []string{"e1"}, es.Encodings)
}

// An Idempotency-Key is taken once; the second caller reads the first's.
func TestIdempotency(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	first := store.Idempotency{EncodingID: "e1", Fingerprint: "f1"}
	_, created, err := s.Remember(ctx, ws, "k", first)
	require.NoError(t, err)
	require.True(t, created)
	got, created, err := s.Remember(ctx, ws, "k", store.Idempotency{EncodingID: "e2", Fingerprint: "f2"})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first, got)
	require.NoError(t, s.MarkEncodeSent(ctx, ws, "k"))
	require.NoError(t, s.MarkEncodeSent(ctx, ws, "k"), "again is a no-op")
	got, _, err = s.Remember(ctx, ws, "k", first)
	require.NoError(t, err)
	require.True(t, got.EncodeSent)
	_, created, err = s.Remember(ctx, "other-ws", "k", first)
	require.NoError(t, err)
	require.True(t, created, "keys are per workspace")
}
