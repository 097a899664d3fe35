package worker_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// Two workers share the consumer; a burst of events for the same
// credentials (each success twice, under two webhook ids, plus a late
// deletion) is handled concurrently. Every encoding ends in exactly one
// final state with exactly one outcome per transition, and the stored
// record agrees with it.
func TestTwoWorkersBurst(t *testing.T) {
	e := newEnv(t)
	w1 := e.startWorker(t, workerConfig{})
	w2 := e.startWorker(t, workerConfig{})
	const n = 40
	creds := make([]string, n)
	recs := make([]encoding.Record, n)
	for i := range n {
		creds[i] = uuid.NewString()
		w := w1
		if i%2 == 1 {
			w = w2
		}
		recs[i] = w.register(t, creds[i], "", uuid.NewString())
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	now := time.Now()
	for i := range n {
		wg.Go(func() {
			evID := uuid.NewString()
			for _, ev := range []struct {
				typ, id string
				at      time.Time
			}{{"acs_credential.issued", evID, now}, {"acs_credential.issued", evID, now}, {"acs_credential.deleted", "", now.Add(time.Second)}} {
				_, err := e.trySeamEvent(ev.typ, ws, creds[i], ev.at, ev.id)
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	waitResult(t, "matched", n, w1, w2)
	// Every one of the 3n events has been handled by one of the two.
	require.Eventually(t, func() bool {
		total := 0.0
		for _, w := range []*worker{w1, w2} {
			for _, r := range []string{"matched", "duplicate", "late"} {
				total += w.counter("cardwire_worker_events_total", "result", r)
			}
		}
		return total == 3*n
	}, 15*time.Second, 10*time.Millisecond)

	held := w1.counter("cardwire_worker_events_total", "result", "held") + w2.counter("cardwire_worker_events_total", "result", "held")
	handled := w1.counter("cardwire_worker_events_total") + w2.counter("cardwire_worker_events_total") - held
	require.EqualValues(t, 3*n, handled, "no event handled twice to completion")
	require.Positive(t, w1.counter("cardwire_worker_events_total", "result", "matched"), "worker 1 took part")
	require.Positive(t, w2.counter("cardwire_worker_events_total", "result", "matched"), "worker 2 took part")
	for i, rec := range recs {
		got := w1.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil).record(t)
		require.True(t, got.Status.Terminal(), "encoding %d still %s", i, got.Status)
		out := e.outcomes.wait(t, rec.EncodingID, got.Status)
		require.Equal(t, got, out, "the final record is the one published")
		finals := 0
		for _, st := range []encoding.Status{encoding.StatusIssued, encoding.StatusFailed} {
			finals += e.outcomes.count(rec.EncodingID, st)
		}
		require.Equal(t, 1, finals, "encoding %d resolved once", i)
		require.Equal(t, 1, e.outcomes.count(rec.EncodingID, encoding.StatusPending))
	}
}

// A worker that dies with events in hand (fetched, never acked) loses
// nothing: after the ack wait the events go to the other worker.
func TestKilledWorkerEventsAreRedelivered(t *testing.T) {
	e := newEnv(t)
	registrar := e.startWorker(t, workerConfig{})
	const n = 5
	creds := make([]string, n)
	recs := make([]encoding.Record, n)
	for i := range n {
		creds[i] = uuid.NewString()
		recs[i] = registrar.register(t, creds[i], "", uuid.NewString())
	}
	// The registrar stops consuming, so the "dying" worker below is
	// the only one that gets the events.
	require.NoError(t, registrar.w.Stop(t.Context()))

	for i := range n {
		e.seamEvent(t, "acs_credential.issued", ws, creds[i], time.Now(), "")
	}
	cons, err := e.js.Consumer(t.Context(), streams.EventsStream, streams.WorkerConsumer)
	require.NoError(t, err)
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	got := 0
	for range batch.Messages() {
		got++ // taken, never acked: the worker is killed mid-batch
	}
	require.Equal(t, n, got)

	survivor := e.startWorker(t, workerConfig{})
	for _, rec := range recs {
		require.Equal(t, encoding.StatusIssued, survivor.waitFinal(t, rec.EncodingID).Status)
	}
	// Counted once acknowledged, a moment after the record is final.
	waitResult(t, "matched", n, survivor)
	require.EqualValues(t, n, survivor.counter("cardwire_worker_events_total", "result", "matched"))
}
