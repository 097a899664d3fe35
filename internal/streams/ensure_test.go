package streams_test

import (
	"testing"

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
