package worker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

// A worker that starts with finished and pending encodings in the bucket
// counts only the pending ones, from the pending index.
func TestPendingCountAfterStart(t *testing.T) {
	e := newEnv(t)
	first := e.startWorker(t, workerConfig{})
	var pending []string
	for i := range 6 {
		cred := uuid.NewString()
		rec := first.register(t, cred, "", uuid.NewString())
		switch i % 3 {
		case 0:
			pending = append(pending, rec.EncodingID)
		case 1:
			e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
			require.Equal(t, encoding.StatusIssued, first.waitFinal(t, rec.EncodingID).Status)
		case 2:
			require.Equal(t, http.StatusOK, first.call(t, http.MethodDelete, "/v1/encodings/"+rec.EncodingID, "", nil).Status)
		}
	}
	require.Eventually(t, func() bool { return first.counter("cardwire_worker_encodings_pending") == 2 },
		10*time.Second, 5*time.Millisecond)
	first.stop(t)

	second := e.startWorker(t, workerConfig{})
	require.EqualValues(t, len(pending), second.counter("cardwire_worker_encodings_pending"), "known once Start returns")
	r := second.call(t, http.MethodGet, "/v1/encodings?status=pending", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	var page struct{ Encodings []encoding.Record }
	require.NoError(t, json.Unmarshal(r.Body, &page))
	var got []string
	for _, rec := range page.Encodings {
		got = append(got, rec.EncodingID)
	}
	require.ElementsMatch(t, pending, got)
}

// 500 waits at once cost no NATS consumer: they are fanned out from the
// worker's one feed, and each answers on its own event.
func TestManyWaitsNoConsumers(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	const n = 500
	creds := make([]string, n)
	ids := make([]string, n)
	for i := range n {
		creds[i] = uuid.NewString()
		ids[i] = w.register(t, creds[i], "", uuid.NewString()).EncodingID
	}
	consumers := func() int {
		total := 0
		for _, name := range []string{"SEAM_EVENTS", "KV_ENCODINGS", "ENCODING_TIMERS", "ENCODING_EVENTS"} {
			st, err := e.js.Stream(t.Context(), name)
			require.NoError(t, err)
			info, err := st.Info(t.Context())
			require.NoError(t, err)
			total += info.State.Consumers
		}
		return total
	}
	before := consumers()

	var wg sync.WaitGroup
	answers := make([]encoding.Record, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			r, err := w.try(http.MethodGet, "/v1/encodings/"+ids[i]+"?wait=30s", "", nil, nil)
			if err == nil && r.Status != http.StatusOK {
				err = fmt.Errorf("%d %s", r.Status, r.Body)
			}
			if err == nil {
				err = json.Unmarshal(r.Body, &answers[i])
			}
			errs[i] = err
		})
	}
	require.Eventually(t, func() bool { return w.counter("cardwire_worker_api_waiters") == n },
		20*time.Second, 5*time.Millisecond, "all waits open")
	require.Equal(t, before, consumers(), "no consumer per wait")
	evIDs := make([]string, n)
	for i := range n {
		evIDs[i] = e.seamEvent(t, "acs_credential.issued", ws, creds[i], time.Now(), "")
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, encoding.StatusIssued, answers[i].Status, "wait %d", i)
		require.Equal(t, evIDs[i], answers[i].EventID)
	}
	require.Zero(t, w.counter("cardwire_worker_api_waiters"))
}

// Beyond WORKER_API_MAX_WAITERS a wait is refused with 429; a final record
// answers at once without waiting.
func TestWaiterBound(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{maxWaiters: 2})
	rec := w.register(t, uuid.NewString(), "", uuid.NewString())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 2 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.api.URL+"/v1/encodings/"+rec.EncodingID+"?wait=1m", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	require.Eventually(t, func() bool { return w.counter("cardwire_worker_api_waiters") == 2 }, 10*time.Second, 5*time.Millisecond)
	r := w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID+"?wait=1m", "", nil)
	require.Equal(t, http.StatusTooManyRequests, r.Status)
	require.Equal(t, "too_many_waiters", r.errType(t))
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	require.EqualValues(t, 1, w.counter("cardwire_worker_api_waiters_refused_total"))
	cancel()
	require.Eventually(t, func() bool { return w.counter("cardwire_worker_api_waiters") == 0 }, 10*time.Second, 5*time.Millisecond)

	r = w.call(t, http.MethodDelete, "/v1/encodings/"+rec.EncodingID, "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	start := time.Now()
	r = w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID+"?wait=1m", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, encoding.StatusCanceled, r.record(t).Status)
	require.Less(t, time.Since(start), 30*time.Second, "a final record does not wait out the minute")
}

// An idle event stream gets a comment line every ping interval, so proxies
// that cut idle connections leave it open.
func TestEventStreamPings(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{streamPing: 50 * time.Millisecond})
	rec := w.register(t, uuid.NewString(), "", uuid.NewString())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.api.URL+"/v1/encodings/"+rec.EncodingID+"/events", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	pings := 0
	for sc.Scan() && pings < 2 {
		if strings.HasPrefix(sc.Text(), ": ping") {
			pings++
		}
	}
	require.Equal(t, 2, pings)
}
