package worker_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

func TestAPIAuth(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{token: "s3cret-token"})
	body := map[string]string{"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString(), "action_attempt_id": uuid.NewString()}
	testCases := []struct {
		Name   string
		Token  string
		Status int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "s3cret-tokem", http.StatusUnauthorized},
		{"right token", "s3cret-token", http.StatusCreated},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			r := w.call(t, http.MethodPost, "/v1/encodings", c.Token, body)
			require.Equal(t, c.Status, r.Status, "body %s", r.Body)
			if c.Status == http.StatusUnauthorized {
				require.Equal(t, "unauthorized", r.errType(t))
				require.NotEmpty(t, r.Header.Get("WWW-Authenticate"))
			}
		})
	}
	require.NotContains(t, w.logs.String(), "s3cret-token")
	require.NotContains(t, w.logs.String(), "s3cret-tokem", "not even a wrong token is logged")
	require.EqualValues(t, 2, w.counter("cardwire_worker_api_requests_total", "route", "register", "code", "401"), "401s are counted by route")
	require.EqualValues(t, 2, w.counter("cardwire_worker_api_unauthorized_total"))
	require.Equal(t, 2, strings.Count(w.logs.String(), "API request without a valid token refused"), "and logged")
}

// Beyond WORKER_API_MAX_IN_FLIGHT requests (long polls and streams aside)
// the API answers 429 at once instead of piling up goroutines.
func TestAPIInFlightLimit(t *testing.T) {
	inEncode, release := make(chan struct{}), make(chan struct{})
	_, seamURL := newSim(t, time.Hour, holdEncode(inEncode, release))
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{seamURL: seamURL, seamKey: simKey, maxInFlight: 1})
	held := make(chan response, 1)
	go func() {
		r, _ := w.try(http.MethodPost, "/v1/encodings", "", map[string]string{
			"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()}, nil)
		held <- r
	}()
	<-inEncode // the one slot is taken
	r := w.call(t, http.MethodGet, "/v1/encodings/"+uuid.NewString(), "", nil)
	require.Equal(t, http.StatusTooManyRequests, r.Status)
	require.Equal(t, "too_many_requests", r.errType(t))
	require.EqualValues(t, 1, w.counter("cardwire_worker_api_refused_total"))
	close(release)
	require.Equal(t, http.StatusAccepted, (<-held).Status)
	r = w.call(t, http.MethodGet, "/v1/encodings/"+uuid.NewString(), "", nil)
	require.Equal(t, http.StatusNotFound, r.Status, "the slot is free again")
}

func TestAPIValidation(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	full := func(mut func(map[string]any)) map[string]any {
		b := map[string]any{"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString(), "action_attempt_id": uuid.NewString()}
		mut(b)
		return b
	}
	testCases := []struct {
		Name  string
		Body  any
		Field string
	}{
		{"no encoder", full(func(b map[string]any) { delete(b, "acs_encoder_id") }), "acs_encoder_id"},
		{"no workspace and no default", full(func(b map[string]any) { delete(b, "workspace_id") }), "workspace_id"},
		{"no credential or access method", full(func(b map[string]any) { delete(b, "acs_credential_id") }), "acs_credential_id"},
		{"both credential and access method", full(func(b map[string]any) { b["access_method_id"] = uuid.NewString() }), "access_method_id"},
		{"bad confirm timeout", full(func(b map[string]any) { b["confirm_timeout"] = "1ms" }), "confirm_timeout"},
		{"id with a dot", full(func(b map[string]any) { b["acs_credential_id"] = "a.b" }), "acs_credential_id"},
		{"unknown field", full(func(b map[string]any) { b["acs_credentail_id"] = "typo" }), "acs_credentail_id"},
		{"wrong type", full(func(b map[string]any) { b["acs_encoder_id"] = 7 }), "acs_encoder_id"},
		{"not an object", []int{1}, "JSON object"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			r := w.call(t, http.MethodPost, "/v1/encodings", "", c.Body)
			require.Equal(t, http.StatusBadRequest, r.Status, "body %s", r.Body)
			require.Equal(t, "invalid_input", r.errType(t))
			require.Contains(t, string(r.Body), c.Field)
		})
	}
	for _, c := range []struct{ Name, Method, Path string }{
		{"unknown id", http.MethodGet, "/v1/encodings/" + uuid.NewString()},
		{"id that is not a key", http.MethodGet, "/v1/encodings/a.b"},
		{"unknown path", http.MethodGet, "/v2/encodings"},
	} {
		t.Run(c.Name, func(t *testing.T) {
			r := w.call(t, c.Method, c.Path, "", nil)
			require.Equal(t, http.StatusNotFound, r.Status)
			r.errType(t)
		})
	}
	// Without action_attempt_id the worker would start the encode, which a
	// track-only worker (no Seam API key) cannot: 501 saying what to set.
	r := w.call(t, http.MethodPost, "/v1/encodings", "", full(func(b map[string]any) { delete(b, "action_attempt_id") }))
	require.Equal(t, http.StatusNotImplemented, r.Status)
	require.Equal(t, "track_only", r.errType(t))
	require.Contains(t, string(r.Body), "SEAM_API_KEY")
	r = w.call(t, http.MethodPut, "/v1/encodings", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.Status)
	require.Equal(t, "method_not_allowed", r.errType(t))
	r = w.call(t, http.MethodGet, "/v1/encodings/"+uuid.NewString()+"?wait=2h", "", nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
}

func TestAPIIdempotencyAndConflicts(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	body := map[string]string{"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": cred, "action_attempt_id": uuid.NewString()}
	key := http.Header{"Idempotency-Key": {"front-desk-req-1"}}

	first, err := w.try(http.MethodPost, "/v1/encodings", "", body, key)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, first.Status)
	again, err := w.try(http.MethodPost, "/v1/encodings", "", body, key)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, again.Status)
	require.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.record(t), again.record(t))

	// Without the key, a second encoding for a pending credential is a 409
	// naming the open one.
	r := w.call(t, http.MethodPost, "/v1/encodings", "", body)
	require.Equal(t, http.StatusConflict, r.Status)
	require.Equal(t, "encoding_pending", r.errType(t))
	require.Contains(t, string(r.Body), first.record(t).EncodingID)
	e.outcomes.wait(t, first.record(t).EncodingID, encoding.StatusPending)
	require.Equal(t, 1, e.outcomes.count(first.record(t).EncodingID, encoding.StatusPending))

	// Cancel; cancel again answers the same record (a retried DELETE) and
	// publishes nothing more; then the credential is free again.
	id := first.record(t).EncodingID
	r = w.call(t, http.MethodDelete, "/v1/encodings/"+id, "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, encoding.StatusCanceled, r.record(t).Status)
	require.Equal(t, encoding.ResolvedByCancel, r.record(t).ResolvedBy)
	e.outcomes.wait(t, id, encoding.StatusCanceled)
	r = w.call(t, http.MethodDelete, "/v1/encodings/"+id, "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, encoding.StatusCanceled, r.record(t).Status)
	r = w.call(t, http.MethodPost, "/v1/encodings", "", body)
	require.Equal(t, http.StatusCreated, r.Status)
	next := r.record(t)
	e.outcomes.wait(t, next.EncodingID, encoding.StatusPending)
	require.Equal(t, 1, e.outcomes.count(id, encoding.StatusCanceled))

	// Canceling an encoding that settled otherwise is a 409.
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	require.Equal(t, encoding.StatusIssued, w.waitFinal(t, next.EncodingID).Status)
	r = w.call(t, http.MethodDelete, "/v1/encodings/"+next.EncodingID, "", nil)
	require.Equal(t, http.StatusConflict, r.Status)
	require.Equal(t, "encoding_final", r.errType(t))
}

func TestAPIWaitReturnsOnTheEvent(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())

	type result struct {
		r   response
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		r, err := w.try(http.MethodGet, "/v1/encodings/"+rec.EncodingID+"?wait=30s", "", nil, nil)
		done <- result{r, err, time.Now()}
	}()
	// The long poll is waiting on its KV watch; send the event.
	waitWatching(t, w)
	sent := time.Now()
	e.seamEvent(t, "acs_credential.issued", ws, cred, sent, "")
	res := <-done
	require.NoError(t, res.err)
	require.Equal(t, http.StatusOK, res.r.Status)
	require.Equal(t, encoding.StatusIssued, res.r.record(t).Status)
	t.Logf("wait answered %s after the event was published", res.at.Sub(sent))

	// A wait on a pending encoding that nothing settles ends with the wait.
	other := w.register(t, uuid.NewString(), "", uuid.NewString())
	r := w.call(t, http.MethodGet, "/v1/encodings/"+other.EncodingID+"?wait=200ms", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, encoding.StatusPending, r.record(t).Status)
}

// A long poll answers at its end and on its event alike whether it is
// parked (HTTP/1.1: its connection is taken from net/http, and closes
// after the answer) or waits in its handler (HTTP/2 cannot be taken).
func TestAPIWaitParkedOrInItsHandler(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	require.Equal(t, 1.0, w.counter("cardwire_worker_api_parking"), "this test runs where parking is built")
	h2 := httptest.NewUnstartedServer(w.w.Handler())
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(h2.Close)
	for _, tc := range []struct {
		name   string
		srv    *httptest.Server
		proto  int
		closes bool
	}{
		{"HTTP/1.1, parked", w.api, 1, true},
		{"HTTP/2, in its handler", h2, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type answer struct {
				resp *http.Response
				rec  encoding.Record
				err  error
			}
			get := func(id, wait string) answer {
				resp, err := tc.srv.Client().Get(tc.srv.URL + "/v1/encodings/" + id + "?wait=" + wait)
				if err != nil {
					return answer{err: err}
				}
				defer resp.Body.Close()
				var rec encoding.Record
				err = json.NewDecoder(resp.Body).Decode(&rec)
				return answer{resp: resp, rec: rec, err: err}
			}
			cred := uuid.NewString()
			rec := w.register(t, cred, "", uuid.NewString())

			a := get(rec.EncodingID, "100ms")
			require.NoError(t, a.err)
			require.Equal(t, http.StatusOK, a.resp.StatusCode)
			require.Equal(t, tc.proto, a.resp.ProtoMajor)
			require.Equal(t, tc.closes, a.resp.Close)
			require.Equal(t, "application/json", a.resp.Header.Get("Content-Type"))
			require.Equal(t, encoding.StatusPending, a.rec.Status, "at its end, as it is")

			done := make(chan answer, 1)
			go func() { done <- get(rec.EncodingID, "30s") }()
			waitWatching(t, w)
			e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
			a = <-done
			require.NoError(t, a.err)
			require.Equal(t, http.StatusOK, a.resp.StatusCode)
			require.Equal(t, encoding.StatusIssued, a.rec.Status, "on its event")
			require.Eventually(t, func() bool { return w.counter("cardwire_worker_api_waiters") == 0 },
				10*time.Second, 2*time.Millisecond)
		})
	}
}

// waitWatching waits until the worker's API has a wait open, from the
// waiters gauge.
func waitWatching(t *testing.T, w *worker) {
	t.Helper()
	require.Eventually(t, func() bool {
		return w.counter("cardwire_worker_api_waiters") >= 1
	}, 10*time.Second, 2*time.Millisecond)
}

func TestAPIServerSentEvents(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, w.api.URL+"/v1/encodings/"+rec.EncodingID+"/events", nil)
	require.NoError(t, err)
	resp, err := w.api.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	sc := bufio.NewScanner(resp.Body)
	next := func() (event, data string) {
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data = strings.TrimPrefix(line, "data: ")
			case line == "" && event != "":
				return event, data
			}
		}
		return "", ""
	}
	ev, data := next()
	require.Equal(t, "pending", ev)
	require.Contains(t, data, rec.EncodingID)

	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	ev, data = next()
	require.Equal(t, "issued", ev)
	require.Contains(t, data, `"status":"issued"`)
	ev, _ = next()
	require.Empty(t, ev, "the stream ends once the encoding is final")
}

func TestAPIList(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	var ids []string
	for range 5 {
		ids = append(ids, w.register(t, uuid.NewString(), "", uuid.NewString()).EncodingID)
	}
	require.Equal(t, http.StatusOK, w.call(t, http.MethodDelete, "/v1/encodings/"+ids[0], "", nil).Status)

	var seen []string
	for _, rec := range w.listAll(t, "status=pending&workspace_id="+ws, 2) {
		require.Equal(t, encoding.StatusPending, rec.Status)
		seen = append(seen, rec.EncodingID)
	}
	require.ElementsMatch(t, ids[1:], seen)
	r := w.call(t, http.MethodGet, "/v1/encodings?limit=100000", "", nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
}

// The recent encodings of a workspace, newest request first, from its
// outcome messages: pending and settled, one entry each (its latest
// revision), page by page; another workspace's are not listed.
func TestAPIListRecent(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	var recs []encoding.Record
	creds := make([]string, 5)
	for i := range creds {
		creds[i] = uuid.NewString()
		recs = append(recs, w.register(t, creds[i], "", uuid.NewString()))
	}
	e.seamEvent(t, "acs_credential.issued", ws, creds[1], time.Now(), "")
	e.outcomes.wait(t, recs[1].EncodingID, encoding.StatusIssued)
	for _, rec := range recs {
		e.outcomes.wait(t, rec.EncodingID, encoding.StatusPending)
	}
	seen := w.listAll(t, "workspace_id="+ws, 2)
	require.Len(t, seen, len(recs))
	for i, rec := range seen {
		want := recs[len(recs)-1-i]
		require.Equal(t, want.EncodingID, rec.EncodingID, "newest request first")
	}
	require.Equal(t, encoding.StatusIssued, seen[len(recs)-2].Status, "the latest revision")

	r := w.call(t, http.MethodGet, "/v1/encodings?workspace_id=00000000-0000-4000-8000-0000000000ff", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"encodings":[]}`, string(r.Body))
	r = w.call(t, http.MethodGet, "/v1/encodings?workspace_id="+ws+"&since=48h", "", nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
	r = w.call(t, http.MethodGet, "/v1/encodings?status=issued", "", nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
}
