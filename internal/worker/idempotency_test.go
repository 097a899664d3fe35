package worker_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/streams"
)

// A failure at every step of a registration that starts the encode, then
// a replay with the same Idempotency-Key: the registration completes, the
// encode is sent exactly once (a second encode could write a second card),
// and the encoding settles by its webhook.
func TestIdempotentReplayResumesEveryStep(t *testing.T) {
	steps := []struct {
		Name string
		KV   func(op, key string) bool
		Pub  func(subject string) bool
	}{
		{Name: "deadline timer", Pub: func(s string) bool { return strings.HasPrefix(s, streams.SchedulesSubjectPrefix+".") }},
		{Name: "record", KV: func(op, key string) bool { return op == "create" && strings.HasPrefix(key, "enc.") }},
		{Name: "encoder list", KV: func(op, key string) bool { return op != "get" && strings.HasPrefix(key, "encoder.") }},
		{Name: "target claim", KV: func(op, key string) bool { return op != "get" && strings.HasPrefix(key, "tgt.") }},
		{Name: "encode marked as sent", KV: func(op, key string) bool { return op == "update" && strings.HasPrefix(key, "idem.") }},
		{Name: "action attempt stored", KV: func(op, key string) bool { return op == "update" && strings.HasPrefix(key, "enc.") }},
		{Name: "reads of the record", KV: func(op, key string) bool { return op == "get" && strings.HasPrefix(key, "enc.") }},
	}
	for _, c := range steps {
		t.Run(c.Name, func(t *testing.T) {
			sim, simURL := newSim(t, time.Hour, nil)
			e := newEnv(t)
			f := &faults{}
			w := e.startWorker(t, withFaults(workerConfig{seamURL: simURL, seamKey: simKey}, f))

			// The step fails for the whole first request (retries inside it
			// included), as a NATS outage would.
			var fired atomic.Bool
			f.setKV(func(op, key string) error {
				if c.KV != nil && c.KV(op, key) {
					fired.Store(true)
					return errInjected
				}
				return nil
			})
			f.setPub(func(s string) error {
				if c.Pub != nil && c.Pub(s) {
					fired.Store(true)
					return errInjected
				}
				return nil
			})
			cred := uuid.NewString()
			body := map[string]string{"workspace_id": ws, "acs_encoder_id": uuid.NewString(), "acs_credential_id": cred}
			key := http.Header{"Idempotency-Key": {"desk-" + uuid.NewString()}}
			first, err := w.try(http.MethodPost, "/v1/encodings", "", body, key)
			require.NoError(t, err)
			f.clear()
			require.True(t, fired.Load(), "the step ran")
			t.Logf("first POST: %d %s", first.Status, first.Body)

			again, err := w.try(http.MethodPost, "/v1/encodings", "", body, key)
			require.NoError(t, err)
			require.Contains(t, []int{http.StatusOK, http.StatusAccepted}, again.Status, "replay: %s", again.Body)
			rec := again.record(t)
			require.Equal(t, encoding.StatusPending, rec.Status)
			require.Equal(t, 1, sim.Calls("/acs/encoders/encode_credential"), "encoded exactly once")

			other := body
			other["acs_encoder_id"] = uuid.NewString()
			reused, err := w.try(http.MethodPost, "/v1/encodings", "", other, key)
			require.NoError(t, err)
			require.Equal(t, http.StatusUnprocessableEntity, reused.Status)
			require.Equal(t, "idempotency_key_reused", reused.errType(t))

			evID := e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
			got := w.waitFinal(t, rec.EncodingID)
			require.Equal(t, encoding.StatusIssued, got.Status)
			require.Equal(t, evID, got.EventID)
		})
	}
}
