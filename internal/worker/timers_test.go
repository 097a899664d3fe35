package worker_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// Deadlines have no cap: a timer waits in the stream as a message schedule
// and costs the consumer nothing until it is due. Here the consumer hands
// out at most 5 due timers at once, 5 encodings wait a minute for their
// deadline, and 20 more all reach theirs at once: every one fires. (Parked
// with a delayed Nak, as before, the first 5 would hold the 5 places for a
// minute.)
func TestDeadlinesBeyondTheConsumerLimit(t *testing.T) {
	e := newEnv(t, func(o *streams.WorkerOptions) { o.TimerMaxAckPending = 5 })
	w := e.startWorker(t, workerConfig{confirm: 300 * time.Millisecond, maxAge: 2 * time.Minute})
	for range 5 {
		r := w.call(t, http.MethodPost, "/v1/encodings", "", map[string]string{
			"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString(),
			"action_attempt_id": uuid.NewString(), "confirm_timeout": "1m",
		})
		require.Equal(t, http.StatusCreated, r.Status, "body %s", r.Body)
	}
	var recs []encoding.Record
	for range 20 {
		recs = append(recs, w.register(t, uuid.NewString(), "", uuid.NewString()))
	}
	for _, rec := range recs {
		// Track-only: the deadline extends it, a revision the outbox
		// publishes; its deadline moved means its timer fired.
		require.Eventually(t, func() bool {
			r, err := w.try(http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil, nil)
			var got encoding.Record
			return err == nil && json.Unmarshal(r.Body, &got) == nil && got.Deadline.After(rec.Deadline)
		}, 15*time.Second, 20*time.Millisecond, "deadline of %s fired", rec.EncodingID)
	}
	require.GreaterOrEqual(t, w.counter("cardwire_worker_deadlines_total", "result", "extended"), float64(len(recs)))
}

// A burst of due deadlines against the simulator: every one is reconciled,
// and Seam never sees more than the client's rate limit.
func TestDeadlineBurstRespectsTheSeamRateLimit(t *testing.T) {
	const rps = 5
	var mu sync.Mutex
	var reads []time.Time
	sim, simURL := newSim(t, time.Hour, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/action_attempts/get" || r.URL.Path == "/action_attempts/list" {
				mu.Lock()
				reads = append(reads, time.Now())
				mu.Unlock()
			}
			next.ServeHTTP(rw, r)
		})
	})
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{seamURL: simURL, seamKey: simKey, confirm: 300 * time.Millisecond, maxAge: time.Minute, seamRPS: rps})
	const n = 15
	var ids []string
	for range n {
		r := w.call(t, http.MethodPost, "/v1/encodings", "", map[string]string{
			"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()})
		require.Equal(t, http.StatusAccepted, r.Status, "body %s", r.Body)
		ids = append(ids, r.record(t).EncodingID)
	}
	require.Eventually(t, func() bool { return w.counter("cardwire_worker_deadlines_total", "result", "extended") >= n },
		30*time.Second, 20*time.Millisecond, "every deadline asked Seam")
	mu.Lock()
	defer mu.Unlock()
	for i := range reads {
		in := 0
		for _, b := range reads {
			if !b.Before(reads[i]) && b.Before(reads[i].Add(time.Second)) {
				in++
			}
		}
		// Registrations' encodes share the limit; reads alone never exceed it.
		require.LessOrEqual(t, in, rps, "reads in the second from %v", reads[i])
	}
	require.Len(t, ids, n)
	require.Positive(t, sim.Calls("/action_attempts/list"), "deadlines due together share a list call")
	require.Less(t, len(reads), n, "fewer reads than deadlines")
}
