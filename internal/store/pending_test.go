package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

// The pending index: what is added and not removed, read once; a removal
// leaves nothing behind (no marker a start-up would read), whether it
// names the request time (settling) or not (a repair).
func TestPendingIndex(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	var recs []encoding.Record
	for i := range 6 {
		recs = append(recs, pending(fmt.Sprint("e", i)))
		require.NoError(t, s.AddPending(ctx, recs[i]))
	}
	require.NoError(t, s.RemovePending(ctx, store.PendingOf(recs[0])))
	require.NoError(t, s.RemovePending(ctx, store.Pending{WorkspaceID: ws, EncodingID: "e5"}))
	other := recs[1]
	other.RequestedAt = other.RequestedAt.Add(-time.Second)
	require.NoError(t, s.RemovePending(ctx, store.PendingOf(other)), "another request time is another entry")
	require.NoError(t, s.RemovePending(ctx, store.Pending{WorkspaceID: ws, EncodingID: "never-indexed"}))
	entries, err := s.PendingIndex(ctx)
	require.NoError(t, err)
	var ids []string
	for _, p := range entries {
		ids = append(ids, p.EncodingID)
		require.Equal(t, ws, p.WorkspaceID)
		require.False(t, p.RequestedAt.IsZero())
	}
	require.ElementsMatch(t, []string{"e1", "e2", "e3", "e4"}, ids)
}

// A removal leaves nothing in the index's stream once its marker has
// expired: the stream holds the pending encodings, whatever number have
// settled.
func TestPendingIndexHoldsOnlyPending(t *testing.T) {
	s, js := newStoreJS(t)
	ctx := t.Context()
	const settled, still = 50, 3
	for i := range settled + still {
		rec := pending(fmt.Sprint("e", i))
		require.NoError(t, s.AddPending(ctx, rec))
		if i < settled {
			require.NoError(t, s.RemovePending(ctx, store.PendingOf(rec)))
		}
	}
	st, err := js.Stream(ctx, streams.PendingStream)
	require.NoError(t, err)
	msgs := func() uint64 {
		info, err := st.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	require.LessOrEqual(t, msgs(), uint64(settled+still), "a marker replaces its entry")
	// The markers expire after streams.PendingMarkerTTL: the server's own
	// event, observed through the stream's state.
	require.Eventually(t, func() bool { return msgs() == still }, 10*streams.PendingMarkerTTL, 50*time.Millisecond)
	entries, err := s.PendingIndex(ctx)
	require.NoError(t, err)
	require.Len(t, entries, still)
}

// Version 0.6.0's entries in the records' bucket move to the index's own
// bucket at start-up, for the encodings still pending only, and are
// purged there; a second run finds nothing to move.
func TestMigrateLegacyPending(t *testing.T) {
	s, js := newStoreJS(t)
	ctx := t.Context()
	open, done, gone := pending("open"), pending("done"), pending("gone")
	_, _, err := s.Create(ctx, open)
	require.NoError(t, err)
	done.Status = encoding.StatusIssued
	_, _, err = s.Create(ctx, done)
	require.NoError(t, err)
	for _, rec := range []encoding.Record{open, done, gone} {
		subj := "$KV." + streams.EncodingsBucket + ".pend." + rec.WorkspaceID + "." +
			fmt.Sprint(rec.RequestedAt.UnixMilli()) + "." + rec.EncodingID
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subj})
		require.NoError(t, err)
	}
	moved, err := s.MigrateLegacyPending(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, moved)
	entries, err := s.PendingIndex(ctx)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "open", entries[0].EncodingID)
	require.Equal(t, open.RequestedAt.UnixMilli(), entries[0].RequestedAt.UnixMilli())
	st, err := js.Stream(ctx, streams.BucketStream)
	require.NoError(t, err)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("$KV."+streams.EncodingsBucket+".pend.>"))
	require.NoError(t, err)
	require.Empty(t, info.State.Subjects, "the legacy entries are purged")
	moved, err = s.MigrateLegacyPending(context.Background())
	require.NoError(t, err)
	require.Zero(t, moved)
}
