package streams_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

func TestCheckEventsStream(t *testing.T) {
	good := streams.EventsStreamConfig(streams.DefaultEventsStreamOptions())
	testCases := []struct {
		Name   string
		Mutate func(*jetstream.StreamConfig)
		OK     bool
	}{
		{Name: "as created", Mutate: func(*jetstream.StreamConfig) {}, OK: true},
		{Name: "one wide subject", Mutate: func(c *jetstream.StreamConfig) { c.Subjects = []string{"seam.>"} }, OK: true},
		{Name: "star for the second token", Mutate: func(c *jetstream.StreamConfig) {
			c.Subjects = []string{"seam.*.>", "seam.quarantine"}
		}, OK: true},
		{Name: "memory storage", Mutate: func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }},
		{Name: "no dedupe", Mutate: func(c *jetstream.StreamConfig) { c.Duplicates = 0 }},
		{Name: "no quarantine subject", Mutate: func(c *jetstream.StreamConfig) { c.Subjects = []string{"seam.events.>", "seam.deadletter.>"} }},
		{Name: "narrower events subject", Mutate: func(c *jetstream.StreamConfig) {
			c.Subjects = []string{"seam.events.*.acs_credential.*", "seam.quarantine", "seam.deadletter.>"}
		}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			cfg := good
			cfg.Subjects = append([]string(nil), good.Subjects...)
			c.Mutate(&cfg)
			err := streams.CheckEventsStream(cfg)
			if c.OK {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, streams.ErrStreamMisconfigured)
		})
	}
}

func TestEnsureWorkerReadsFromTheLeader(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	for range 2 { // and again, as a restarted worker would
		owned, err := streams.EnsureWorker(t.Context(), js, streams.DefaultWorkerOptions())
		require.NoError(t, err)
		info, err := owned.Events.Info(t.Context())
		require.NoError(t, err)
		require.Equal(t, -1, info.Config.MaxDeliver, "the worker, not the consumer, bounds deliveries")
		require.ElementsMatch(t, streams.WorkerFilterSubjects(), info.Config.FilterSubjects)
		st, err := js.Stream(t.Context(), "KV_"+streams.EncodingsBucket)
		require.NoError(t, err)
		require.False(t, st.CachedInfo().Config.AllowDirect, "direct gets could be served by a lagging follower")
	}
}

// The bucket is created once with direct gets off; a worker starting again
// (or many at once) never updates it, so nothing can turn direct gets back
// on even for a moment. Against 0348d8c every start updated the bucket
// twice (CreateOrUpdateKeyValue turned direct gets on, then off again).
func TestEnsureWorkerNeverFlipsTheBucket(t *testing.T) {
	srv := natstest.RunJetStream(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	ctx := t.Context()
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	_, err := streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)

	updates, err := nc.SubscribeSync("$JS.EVENT.ADVISORY.STREAM.UPDATED." + streams.BucketStream)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 4 { // concurrent start-ups
		wg.Go(func() {
			_, err := streams.EnsureWorker(context.Background(), js, streams.DefaultWorkerOptions())
			require.NoError(t, err)
		})
	}
	wg.Wait()
	// A marker published after the start-ups: any advisory they caused
	// was delivered before it.
	marker, err := nc.SubscribeSync("cardwire.test.marker")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("cardwire.test.marker", nil))
	_, err = marker.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	n, _, err := updates.Pending()
	require.NoError(t, err)
	require.Zero(t, n, "a start-up updated the bucket's stream")

	st, err := js.Stream(ctx, streams.BucketStream)
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	require.False(t, cfg.AllowDirect)
	require.EqualValues(t, streams.MaxRevisions, cfg.MaxMsgsPerSubject, "history keeps every revision for the outbox")
}

// A bucket made by an earlier version (CreateKeyValue: direct gets on,
// history 1) is moved to the new configuration once.
func TestEnsureWorkerMigratesAnOldBucket(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := t.Context()
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: streams.EncodingsBucket, History: 1,
		TTL: streams.DefaultWorkerOptions().RecordTTL, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	_, err = streams.EnsureWorker(ctx, js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	st, err := js.Stream(ctx, streams.BucketStream)
	require.NoError(t, err)
	require.False(t, st.CachedInfo().Config.AllowDirect)
	require.EqualValues(t, streams.MaxRevisions, st.CachedInfo().Config.MaxMsgsPerSubject)
}
