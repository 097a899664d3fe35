package docs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
	svix "github.com/svix/svix-webhooks/go"
	"sigs.k8s.io/yaml"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/events"
	"github.com/cardwire/cardwire/internal/eventstest"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
)

const (
	outcomeSchemaFile  = "schemas/encoding-outcome.schema.json"
	envelopeSchemaFile = "schemas/seam-event-envelope.schema.json"
	asyncAPIFile       = "asyncapi.yaml"
)

// compileSchema compiles a schema file with format assertions on, so that
// a time that is not RFC 3339 fails as a subscriber's strict validator
// would fail it.
func compileSchema(t *testing.T, file string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(file)
	require.NoError(t, err, "compile %s", file)
	return sch
}

// instance decodes JSON the way the validator expects it (numbers as
// json.Number).
func instance(t *testing.T, data []byte) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	require.NoError(t, err)
	return v
}

// asyncAPI is docs/asyncapi.yaml, decoded.
type asyncAPI struct {
	raw map[string]any
}

func loadAsyncAPI(t *testing.T) asyncAPI {
	t.Helper()
	y, err := os.ReadFile(asyncAPIFile)
	require.NoError(t, err)
	j, err := yaml.YAMLToJSON(y)
	require.NoError(t, err)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(j, &raw))
	return asyncAPI{raw: raw}
}

// at returns the value at a path of object keys, failing the test if any
// is missing.
func (a asyncAPI) at(t *testing.T, path ...string) map[string]any {
	t.Helper()
	cur := a.raw
	for i, k := range path {
		next, ok := cur[k].(map[string]any)
		require.True(t, ok, "asyncapi.yaml has no object at %s", strings.Join(path[:i+1], "."))
		cur = next
	}
	return cur
}

// message is a component message: the target of a channel message's $ref.
func (a asyncAPI) message(t *testing.T, name string) map[string]any {
	t.Helper()
	return a.at(t, "components", "messages", name)
}

// headerNames are the header properties a component message declares.
func (a asyncAPI) headerNames(t *testing.T, msg string) []string {
	t.Helper()
	props, ok := a.message(t, msg)["headers"].(map[string]any)["properties"].(map[string]any)
	require.True(t, ok, "message %s declares no header properties", msg)
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// headerSchema compiles a component message's headers schema (AsyncAPI's
// default schema format is a superset of JSON Schema draft 7; the headers
// use only keywords that mean the same in 2020-12).
func (a asyncAPI) headerSchema(t *testing.T, msg string) *jsonschema.Schema {
	t.Helper()
	h, ok := a.message(t, msg)["headers"]
	require.True(t, ok, "message %s has no headers", msg)
	b, err := json.Marshal(h)
	require.NoError(t, err)
	url := "mem://asyncapi/" + msg + "/headers.json"
	c := jsonschema.NewCompiler()
	require.NoError(t, c.AddResource(url, instance(t, b)))
	sch, err := c.Compile(url)
	require.NoError(t, err, "headers of %s", msg)
	return sch
}

// checkHeaders checks the headers of one real message against the
// AsyncAPI message it is on: every header is declared there, has one value,
// and the values validate against the headers schema.
func (a asyncAPI) checkHeaders(t *testing.T, msg string, sch *jsonschema.Schema, subject string, h nats.Header) {
	t.Helper()
	declared := a.headerNames(t, msg)
	obj := map[string]any{}
	for k, v := range h {
		require.Contains(t, declared, k, "%s on %s: header %s is not in asyncapi.yaml's %s", msg, subject, k, msg)
		require.Len(t, v, 1, "%s on %s: header %s", msg, subject, k)
		obj[k] = v[0]
	}
	require.NoError(t, sch.Validate(obj), "%s on %s: headers %v", msg, subject, h)
}

const (
	ws     = "6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11"
	simKey = "seam_test_docs"
)

// stack is the whole system on one embedded server, with the simulator as
// Seam: sim → signed webhooks → receiver → SEAM_EVENTS → worker (Seam
// client → sim) → outbox → ENCODING_EVENTS.
type stack struct {
	js       jetstream.JetStream
	sim      *seamsim.Sim
	simURL   string
	receiver string
	secret   string
	api      string
}

func newStack(t *testing.T) *stack {
	t.Helper()
	ctx := t.Context()
	srv := natstest.RunJetStream(t)

	// The receiver, on its own connection, as cmd/webhook-receiver wires it.
	_, rjs := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(ctx, rjs, streams.DefaultEventsStreamOptions()))
	secret := newSecret()
	receiver := eventstest.Serve(t, eventstest.Verifier(t, secret), rjs)

	sim, err := seamsim.New(seamsim.Options{
		APIKey: simKey, WorkspaceID: ws, WebhookURL: receiver.URL + events.Path, WebhookSecret: secret,
		EncodeDelay: 20 * time.Millisecond, Log: zerolog.Nop(),
	})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(simSrv.Close)

	// The worker, on its own connection, as cmd/worker wires it.
	_, wjs := natstest.Connect(t, srv.ClientURL())
	owned, err := streams.EnsureWorker(ctx, wjs, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	co := seam.DefaultOptions()
	// No client retries: a failure the test injects reaches the worker.
	co.BaseURL, co.APIKey, co.Registerer, co.MaxRetries = simSrv.URL, simKey, reg, 0
	client, err := seam.New(co)
	require.NoError(t, err)
	wo := worker.DefaultOptions()
	wo.JS, wo.Owned, wo.Registerer, wo.Seam = wjs, owned, reg, client
	wo.Concurrency, wo.HandleTimeout, wo.OrderGrace = 4, 5*time.Second, 0
	wo.Limits.ConfirmTimeout, wo.Limits.MaxAge = time.Second, 2*time.Second
	w, err := worker.New(ctx, wo)
	require.NoError(t, err)
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { _ = w.Stop(context.Background()) })
	api := httptest.NewServer(w.Handler())
	t.Cleanup(api.Close)

	_, js := natstest.Connect(t, srv.ClientURL())
	return &stack{js: js, sim: sim, simURL: simSrv.URL, receiver: receiver.URL, secret: secret, api: api.URL}
}

func newSecret() string {
	key := make([]byte, 24)
	_, _ = rand.Read(key)
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

// call makes one worker API request and decodes the record it answers.
func (s *stack) call(t *testing.T, method, path string, body any, want int) encoding.Record {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.api+path, r)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, want, resp.StatusCode, "%s %s: %s", method, path, raw)
	var rec encoding.Record
	require.NoError(t, json.Unmarshal(raw, &rec))
	return rec
}

// final waits for an encoding to be final and returns it.
func (s *stack) final(t *testing.T, id string) encoding.Record {
	t.Helper()
	rec := s.call(t, http.MethodGet, "/v1/encodings/"+id+"?wait=10s", nil, http.StatusOK)
	require.True(t, rec.Status.Terminal(), "%s still %s after the wait", id, rec.Status)
	return rec
}

// simFail makes the sim's next encode on encoder fail with code (Seam then
// sends no webhook).
func (s *stack) simFail(t *testing.T, encoder, code string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"acs_encoder_id": encoder, "error_code": code})
	req, err := http.NewRequest(http.MethodPost, s.simURL+"/acs/encoders/simulate/next_credential_encode_will_fail", bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+simKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// webhook signs body with the svix library and posts it to the receiver,
// as Seam does; the receiver must answer 204.
func (s *stack) webhook(t *testing.T, body []byte) {
	t.Helper()
	wh, err := svix.NewWebhook(s.secret)
	require.NoError(t, err)
	id, now := "msg_"+uuid.NewString(), time.Now()
	sig, err := wh.Sign(id, now, body)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.receiver+events.Path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("svix-id", id)
	req.Header.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("svix-signature", sig)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

// event is a Seam event body of type typ; occurredAt "" leaves occurred_at
// out.
func event(typ, occurredAt string, fields map[string]string) []byte {
	m := map[string]string{"event_id": uuid.NewString(), "event_type": typ, "workspace_id": ws,
		"created_at": time.Now().UTC().Format(time.RFC3339Nano)}
	if occurredAt != "" {
		m["occurred_at"] = occurredAt
	}
	for k, v := range fields {
		m[k] = v
	}
	b, _ := json.Marshal(m)
	return b
}

// stored is one message read back from a stream.
type stored struct {
	seq     uint64
	subject string
	header  nats.Header
	data    []byte
}

// readAll returns every message in stream, in order.
func (s *stack) readAll(t *testing.T, stream string) []stored {
	t.Helper()
	st, err := s.js.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := st.Info(t.Context())
	require.NoError(t, err)
	var out []stored
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			continue // deleted
		}
		out = append(out, stored{seq: m.Sequence, subject: m.Subject, header: m.Header, data: m.Data})
	}
	return out
}

func (m stored) String() string { return fmt.Sprintf("#%d %s %s", m.seq, m.subject, m.data) }
