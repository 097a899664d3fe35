package worker_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
)

// The outbox is the one publisher of outcomes: a worker that stored state
// changes but died before any outcome was published (here: every outcome
// publish of the first worker fails, so nothing was acked) loses nothing.
// After another worker takes over, each revision is published exactly
// once, in revision order, with message id <encoding_id>:<revision>.
func TestOutboxCrashBeforePublish(t *testing.T) {
	e := newEnv(t)
	f := &faults{}
	f.setPub(func(subject string) error {
		if strings.HasPrefix(subject, "encodings.") {
			return errInjected
		}
		return nil
	})
	first := e.startWorker(t, withFaults(workerConfig{}, f))
	cred := uuid.NewString()
	rec := first.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	issued := first.waitFinal(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, issued.Status)
	canceled := first.register(t, uuid.NewString(), "", uuid.NewString())
	r := first.call(t, http.MethodDelete, "/v1/encodings/"+canceled.EncodingID, "", nil)
	require.Equal(t, http.StatusOK, r.Status, "the cancel is stored, whatever the outbox does")
	require.Eventually(t, func() bool { return first.counter("cardwire_worker_outbox_errors_total") >= 2 },
		10*time.Second, 10*time.Millisecond, "the outbox tried and failed")
	require.Zero(t, e.outcomes.count(rec.EncodingID, encoding.StatusPending))
	first.stop(t)

	e.startWorker(t, workerConfig{})
	e.outcomes.wait(t, rec.EncodingID, encoding.StatusIssued)
	e.outcomes.wait(t, canceled.EncodingID, encoding.StatusCanceled)
	for _, id := range []string{rec.EncodingID, canceled.EncodingID} {
		revs := e.outcomes.revisions(id)
		require.Equal(t, []uint64{1, 2}, revs, "each revision once, in order")
	}
	for _, m := range e.outcomes.all() {
		require.Equal(t, m.Record.EncodingID+":"+itoa(m.Record.Revision), m.MsgID)
	}
	out := e.outcomes.wait(t, rec.EncodingID, encoding.StatusIssued)
	require.Equal(t, issued, out, "the outcome is the stored record")
}
