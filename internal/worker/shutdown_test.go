package worker_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

// At shutdown long polls end at once, while a registration in flight (here
// held inside its encode call to Seam) finishes and answers with the
// stored attempt: a cut-off registration would leave steps undone.
func TestShutdownEndsWaitsButFinishesRegistrations(t *testing.T) {
	inEncode, release := make(chan struct{}), make(chan struct{})
	_, seamURL := newSim(t, time.Hour, holdEncode(inEncode, release))

	e := newEnv(t)
	w := e.startWorker(t, workerConfig{seamURL: seamURL, seamKey: simKey})
	waiting := w.register(t, uuid.NewString(), "", uuid.NewString())

	type answer struct {
		r   response
		err error
	}
	poll, post := make(chan answer, 1), make(chan answer, 1)
	go func() {
		r, err := w.try(http.MethodGet, "/v1/encodings/"+waiting.EncodingID+"?wait=1m", "", nil, nil)
		poll <- answer{r, err}
	}()
	go func() {
		r, err := w.try(http.MethodPost, "/v1/encodings", "", map[string]string{
			"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()}, nil)
		post <- answer{r, err}
	}()
	<-inEncode
	require.Eventually(t, func() bool {
		return w.counter("cardwire_worker_api_waiters") == 1 && w.counter("cardwire_worker_api_in_flight") >= 1
	}, 10*time.Second, 2*time.Millisecond, "the long poll is open and the POST in flight")

	// What cmd/worker does first at shutdown: end the waits, then shut the
	// API's HTTP server down, which waits for the requests in flight.
	w.w.EndWaits()
	p := <-poll
	require.NoError(t, p.err)
	require.Equal(t, http.StatusOK, p.r.Status)
	require.Equal(t, encoding.StatusPending, p.r.record(t).Status)

	shut := make(chan error, 1)
	go func() { shut <- w.api.Config.Shutdown(context.Background()) }()
	close(release)
	a := <-post
	require.NoError(t, a.err)
	require.Equal(t, http.StatusAccepted, a.r.Status, "body %s", a.r.Body)
	require.NotEmpty(t, a.r.record(t).ActionAttemptID, "the attempt id was stored before the answer")
	require.NoError(t, <-shut)
}
