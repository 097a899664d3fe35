package docs_test

import (
	"encoding/json"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
)

// TestRealMessagesMatchTheContract drives every kind of outcome and every
// SEAM_EVENTS subject through a real receiver and worker, then checks each
// stored message against the JSON Schemas and the AsyncAPI headers.
func TestRealMessagesMatchTheContract(t *testing.T) {
	s := newStack(t)
	now := func() string { return time.Now().UTC().Format(time.RFC3339Nano) }
	start := func(body map[string]string) encoding.Record {
		body["workspace_id"] = ws
		return s.call(t, http.MethodPost, "/v1/encodings", body, http.StatusAccepted)
	}
	register := func(body map[string]string, want int) encoding.Record {
		body["workspace_id"], body["action_attempt_id"] = ws, uuid.NewString()
		return s.call(t, http.MethodPost, "/v1/encodings", body, want)
	}

	// Deadlines first, so that they run while the rest is done.
	s.sim.HoldNextEncode()
	expired := start(map[string]string{"acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()})
	failEncoder := uuid.NewString()
	s.simFail(t, failEncoder, "no_credential_on_encoder")
	failedAtDeadline := start(map[string]string{"acs_encoder_id": failEncoder, "acs_credential_id": uuid.NewString()})

	// Issued by Seam's webhook, with the card number.
	issued := start(map[string]string{"acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()})
	require.NotEmpty(t, s.final(t, issued.EncodingID).CardNumber)

	// Issued while Seam could not give the card number: it follows as the
	// next revision, with the same status.
	s.sim.FailNext("/acs/credentials/get", http.StatusServiceUnavailable, 0)
	enriched := start(map[string]string{"acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()})
	require.Eventually(t, func() bool {
		return s.call(t, http.MethodGet, "/v1/encodings/"+enriched.EncodingID, nil, http.StatusOK).CardNumber != ""
	}, 10*time.Second, 20*time.Millisecond)

	// An access method, issued by its webhook.
	method := start(map[string]string{"acs_encoder_id": uuid.NewString(), "access_method_id": uuid.NewString()})

	// Failed by a Seam event (applied whether it comes before or after the
	// registration).
	cred := uuid.NewString()
	s.webhook(t, event("acs_credential.deleted", now(), map[string]string{"acs_credential_id": cred}))
	failedByEvent := register(map[string]string{"acs_encoder_id": uuid.NewString(), "acs_credential_id": cred,
		"requested_at": time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)}, http.StatusCreated)

	// Canceled.
	canceled := register(map[string]string{"acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString()}, http.StatusCreated)
	s.call(t, http.MethodDelete, "/v1/encodings/"+canceled.EncodingID, nil, http.StatusOK)

	// Quarantined: verified, not JSON.
	s.webhook(t, []byte("not json"))
	// Dead-lettered: verified and stored, but the worker can never use it
	// (no occurred_at).
	s.webhook(t, event("acs_credential.issued", "", map[string]string{"acs_credential_id": uuid.NewString()}))

	want := map[string]encoding.Status{
		expired.EncodingID: encoding.StatusExpired, failedAtDeadline.EncodingID: encoding.StatusFailed,
		issued.EncodingID: encoding.StatusIssued, enriched.EncodingID: encoding.StatusIssued,
		method.EncodingID: encoding.StatusIssued, failedByEvent.EncodingID: encoding.StatusFailed,
		canceled.EncodingID: encoding.StatusCanceled,
	}
	finals := map[string]encoding.Record{}
	for id, status := range want {
		rec := s.final(t, id)
		require.Equal(t, status, rec.Status, "%s", id)
		finals[id] = rec
	}

	// The outbox publishes after the state is stored: wait until every
	// final revision is on ENCODING_EVENTS, and a dead letter is stored.
	var outcomes, evs []stored
	require.Eventually(t, func() bool {
		outcomes = s.readAll(t, streams.OutcomesStream)
		evs = s.readAll(t, streams.EventsStream)
		seen := map[string]bool{}
		for _, m := range outcomes {
			seen[m.header.Get(jetstream.MsgIDHeader)] = true
		}
		for _, rec := range finals {
			if !seen[worker.OutcomeMsgID(rec)] {
				return false
			}
		}
		return slices.ContainsFunc(evs, func(m stored) bool { return strings.HasPrefix(m.subject, streams.DeadLetterSubjectPrefix+".") })
	}, 10*time.Second, 20*time.Millisecond)

	api := loadAsyncAPI(t)
	t.Run("outcomes", func(t *testing.T) {
		sch, headers := compileSchema(t, outcomeSchemaFile), api.headerSchema(t, "outcome")
		statuses := map[encoding.Status]bool{}
		revisions := map[string][]uint64{}
		var records []encoding.Record
		for _, m := range outcomes {
			require.NoError(t, sch.Validate(instance(t, m.data)), "%s", m)
			api.checkHeaders(t, "outcome", headers, m.subject, m.header)
			var rec encoding.Record
			require.NoError(t, json.Unmarshal(m.data, &rec))
			subj, err := streams.OutcomeSubject(rec.WorkspaceID, string(rec.Status))
			require.NoError(t, err)
			require.Equal(t, subj, m.subject)
			require.Equal(t, rec.EncodingID+":"+strconv.FormatUint(rec.Revision, 10), m.header.Get(jetstream.MsgIDHeader))
			statuses[rec.Status] = true
			revisions[rec.EncodingID] = append(revisions[rec.EncodingID], rec.Revision)
			records = append(records, rec)
		}
		require.Len(t, statuses, 5, "every status is covered: %v", statuses)
		for id, revs := range revisions {
			for i, r := range revs {
				require.EqualValues(t, i+1, r, "%s: every revision once, in order: %v", id, revs)
			}
		}
		// What the README promises subscribers about issued.
		var enrichedIssued []encoding.Record
		for _, rec := range records {
			if rec.EncodingID == enriched.EncodingID && rec.Status == encoding.StatusIssued {
				enrichedIssued = append(enrichedIssued, rec)
			}
		}
		require.Len(t, enrichedIssued, 2, "issued, then issued with the card number")
		require.Empty(t, enrichedIssued[0].CardNumber)
		require.NotEmpty(t, enrichedIssued[1].CardNumber)
		require.NotNil(t, enrichedIssued[1].IssuedAt)
		require.Equal(t, enrichedIssued[0].Revision+1, enrichedIssued[1].Revision)
		require.NotEmpty(t, finals[method.EncodingID].AccessMethodID)
		require.Equal(t, encoding.ResolvedByWebhook, finals[failedByEvent.EncodingID].ResolvedBy)
		require.Equal(t, encoding.ErrorCredentialDeleted, finals[failedByEvent.EncodingID].Error.Type)
		require.Equal(t, encoding.ResolvedByReconcile, finals[failedAtDeadline.EncodingID].ResolvedBy)
		require.Equal(t, encoding.ResolvedByDeadline, finals[expired.EncodingID].ResolvedBy)
	})

	t.Run("events", func(t *testing.T) {
		envelope := compileSchema(t, envelopeSchemaFile)
		headers := map[string]*jsonschema.Schema{}
		for _, msg := range []string{"seamEvent", "quarantined", "deadLetter"} {
			headers[msg] = api.headerSchema(t, msg)
		}
		kinds := map[string]int{}
		for _, m := range evs {
			switch {
			case strings.HasPrefix(m.subject, streams.EventsSubjectPrefix+"."):
				kinds["seamEvent"]++
				api.checkHeaders(t, "seamEvent", headers["seamEvent"], m.subject, m.header)
				require.NoError(t, envelope.Validate(instance(t, m.data)), "%s", m)
				env, err := events.ParseEnvelope(m.data)
				require.NoError(t, err)
				subj, err := env.Subject()
				require.NoError(t, err)
				require.Equal(t, subj, m.subject)
				require.Equal(t, streams.EventMsgIDPrefix+env.EventID, m.header.Get(jetstream.MsgIDHeader))
				require.Equal(t, env.EventID, m.header.Get(streams.HeaderEventID))
				require.NotEmpty(t, m.header.Get(streams.HeaderWebhookID), "it came by webhook")
			case m.subject == streams.QuarantineSubject:
				kinds["quarantined"]++
				api.checkHeaders(t, "quarantined", headers["quarantined"], m.subject, m.header)
				require.Equal(t, events.QuarantineNotJSON, m.header.Get(streams.HeaderQuarantineReason))
			case m.subject == streams.DeadLetterSubject(streams.WorkerConsumer):
				kinds["deadLetter"]++
				api.checkHeaders(t, "deadLetter", headers["deadLetter"], m.subject, m.header)
				require.NoError(t, envelope.Validate(instance(t, m.data)), "%s", m)
			default:
				t.Fatalf("a message on a subject asyncapi.yaml does not name: %s", m)
			}
		}
		require.GreaterOrEqual(t, kinds["seamEvent"], 5, "%v", kinds)
		require.Equal(t, 1, kinds["quarantined"], "%v", kinds)
		require.Equal(t, 1, kinds["deadLetter"], "%v", kinds)
	})

	t.Run("a mutated outcome fails", func(t *testing.T) {
		sch := compileSchema(t, outcomeSchemaFile)
		var base []byte
		for _, m := range outcomes {
			if m.header.Get(jetstream.MsgIDHeader) == worker.OutcomeMsgID(finals[enriched.EncodingID]) {
				base = m.data
			}
		}
		require.NotNil(t, base)
		require.NoError(t, sch.Validate(instance(t, base)))
		testCases := []struct {
			Name   string
			Mutate func(m map[string]any)
			Want   string // in the validation error
		}{
			{"unknown status", func(m map[string]any) { m["status"] = "done" }, "at '/status'"},
			{"revision zero", func(m map[string]any) { m["revision"] = 0 }, "at '/revision'"},
			{"revision as a string", func(m map[string]any) { m["revision"] = "3" }, "at '/revision'"},
			{"no encoding_id", func(m map[string]any) { delete(m, "encoding_id") }, "'encoding_id'"},
			{"no requested_at", func(m map[string]any) { delete(m, "requested_at") }, "'requested_at'"},
			{"requested_at not a time", func(m map[string]any) { m["requested_at"] = "yesterday" }, "not valid date-time"},
			{"credential and access method", func(m map[string]any) { m["access_method_id"] = "am1" }, "oneOf"},
			{"neither credential nor access method", func(m map[string]any) { delete(m, "acs_credential_id") }, "oneOf"},
			{"issued without issue_kind", func(m map[string]any) { delete(m, "issue_kind") }, "'issue_kind'"},
			{"final without resolved_at", func(m map[string]any) { delete(m, "resolved_at") }, "'resolved_at'"},
			{"unknown resolved_by", func(m map[string]any) { m["resolved_by"] = "magic" }, "at '/resolved_by'"},
			{"webhook without event_id", func(m map[string]any) { delete(m, "event_id") }, "missing property 'event_id'"},
			{"failed without error", func(m map[string]any) { m["status"] = "failed" }, "missing property 'error'"},
			{"pending with resolved_at", func(m map[string]any) { m["status"] = "pending" }, "false schema"},
			{"error without type", func(m map[string]any) {
				m["status"], m["error"] = "failed", map[string]any{"message": "no card"}
			}, "missing property 'type'"},
			{"id with a dot", func(m map[string]any) { m["workspace_id"] = "ws.1" }, "at '/workspace_id'"},
		}
		for _, c := range testCases {
			t.Run(c.Name, func(t *testing.T) {
				var m map[string]any
				require.NoError(t, json.Unmarshal(base, &m))
				c.Mutate(m)
				b, err := json.Marshal(m)
				require.NoError(t, err)
				err = sch.Validate(instance(t, b))
				require.Error(t, err)
				require.Contains(t, err.Error(), c.Want, "it fails for the reason the case is about")
			})
		}
	})
}

func TestAMutatedEnvelopeFails(t *testing.T) {
	sch := compileSchema(t, envelopeSchemaFile)
	base, err := os.ReadFile("../internal/events/testdata/acs_credential_issued.json")
	require.NoError(t, err)
	require.NoError(t, sch.Validate(instance(t, base)))
	testCases := []struct {
		Name   string
		Mutate func(m map[string]any)
		Want   string // in the validation error
	}{
		{"no event_id", func(m map[string]any) { delete(m, "event_id") }, "'event_id'"},
		{"no event_type", func(m map[string]any) { delete(m, "event_type") }, "'event_type'"},
		{"no workspace_id", func(m map[string]any) { delete(m, "workspace_id") }, "'workspace_id'"},
		{"event_id with a dot", func(m map[string]any) { m["event_id"] = "e.1" }, "at '/event_id'"},
		{"event_type with a wildcard", func(m map[string]any) { m["event_type"] = "acs_credential.*" }, "at '/event_type'"},
		{"occurred_at a number", func(m map[string]any) { m["occurred_at"] = 1 }, "at '/occurred_at'"},
		{"occurred_at not a time", func(m map[string]any) { m["occurred_at"] = "today" }, "not valid date-time"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var m map[string]any
			require.NoError(t, json.Unmarshal(base, &m))
			c.Mutate(m)
			b, err := json.Marshal(m)
			require.NoError(t, err)
			require.Error(t, sch.Validate(instance(t, b)))
		})
	}
}

// TestOutcomeSchemaHasEveryRecordField: the schema names exactly the JSON
// fields of encoding.Record (and its error), with the statuses and
// resolved_by values the code has, so a new field cannot go undocumented.
func TestOutcomeSchemaHasEveryRecordField(t *testing.T) {
	b, err := os.ReadFile(outcomeSchemaFile)
	require.NoError(t, err)
	var doc struct {
		Required   []string `json:"required"`
		Properties map[string]struct {
			Enum       []string                   `json:"enum"`
			Required   []string                   `json:"required"`
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(b, &doc))

	fields, always := jsonFields(reflect.TypeFor[encoding.Record]())
	require.ElementsMatch(t, fields, keys(doc.Properties), "schema properties vs encoding.Record")
	require.ElementsMatch(t, always, doc.Required, "required = the fields without omitempty")
	errFields, errAlways := jsonFields(reflect.TypeFor[encoding.RecordError]())
	require.ElementsMatch(t, errFields, keys(doc.Properties["error"].Properties))
	require.ElementsMatch(t, errAlways, doc.Properties["error"].Required)

	statuses := []string{string(encoding.StatusPending), string(encoding.StatusIssued), string(encoding.StatusFailed),
		string(encoding.StatusExpired), string(encoding.StatusCanceled)}
	require.ElementsMatch(t, statuses, doc.Properties["status"].Enum)
	require.ElementsMatch(t, []string{encoding.ResolvedByWebhook, encoding.ResolvedByReconcile, encoding.ResolvedByCancel,
		encoding.ResolvedByDeadline}, doc.Properties["resolved_by"].Enum)
	// The same statuses are the outcome subject's last token.
	api := loadAsyncAPI(t)
	require.ElementsMatch(t, statuses, strs(api.at(t, "channels", "outcomes", "parameters", "status")["enum"]))
}

// jsonFields returns the JSON names of t's fields, and those always
// present (no omitempty).
func jsonFields(t reflect.Type) (all, always []string) {
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		all = append(all, name)
		if !strings.Contains(opts, "omitempty") {
			always = append(always, name)
		}
	}
	return all, always
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}
