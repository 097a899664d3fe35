package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/promtest"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
	cwworker "github.com/cardwire/cardwire/internal/worker"
)

const ws = "6c9f2b2e-94b5-4ee6-a1d1-3a6e0d3f7c11"

// env is one embedded JetStream server with what the receiver and the
// worker create, plus a collector of every outcome message.
type env struct {
	nats     *natstest.Server // nil when the server is another process
	url      string
	js       jetstream.JetStream
	owned    streams.WorkerOptions
	outcomes *outcomeLog
}

func newEnv(t testing.TB, configure ...func(*streams.WorkerOptions)) *env {
	t.Helper()
	srv := natstest.RunJetStream(t)
	e := newEnvAt(t, srv.ClientURL(), configure...)
	e.nats = srv
	return e
}

// newEnvAt is newEnv on the server at url.
func newEnvAt(t testing.TB, url string, configure ...func(*streams.WorkerOptions)) *env {
	t.Helper()
	_, js := natstest.Connect(t, url)
	ctx := t.Context()
	require.NoError(t, streams.EnsureEventsStream(ctx, js, streams.DefaultEventsStreamOptions()))
	owned := streams.DefaultWorkerOptions()
	owned.AckWait, owned.MaxDeliver = 2*time.Second, 4
	for _, c := range configure {
		c(&owned)
	}
	_, err := streams.EnsureWorker(ctx, js, owned)
	require.NoError(t, err)
	e := &env{url: url, js: js, owned: owned, outcomes: &outcomeLog{byStatus: map[encoding.Status]int{}, changed: make(chan struct{})}}
	e.outcomes.follow(t, js)
	return e
}

// worker is one worker replica: its own connection, worker, registry and
// API server.
type worker struct {
	w    *cwworker.Worker
	reg  *prometheus.Registry
	api  *httptest.Server
	logs *bytes.Buffer
	mu   *sync.Mutex
}

type workerConfig struct {
	token    string
	earlyTTL time.Duration
	// seamURL and seamKey give the worker a Seam client (the simulator).
	seamURL, seamKey string
	confirm, maxAge  time.Duration
	orderGrace       time.Duration
	skew             time.Duration
	// bucket and publisher wrap the real ones (fault injection).
	bucket    func(jetstream.KeyValue) store.KV
	publisher func(jetstream.JetStream) publisherJS
	// url connects to another server than the env's (a cluster node).
	url string
	// maxWaiters and streamPing override the API's.
	maxWaiters int
	streamPing time.Duration
	// seamRPS is the Seam client's rate limit (the default when 0).
	seamRPS float64
	// maxInFlight overrides the API's in-flight bound.
	maxInFlight int
	// concurrency overrides the 4 events a test worker handles at once.
	concurrency int
}

// publisherJS is what the worker publishes with.
type publisherJS interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// workerOptions are the options every test worker starts from.
func (e *env) workerOptions(t testing.TB, cfg workerConfig, js jetstream.JetStream, log zerolog.Logger, reg prometheus.Registerer) cwworker.Options {
	t.Helper()
	ctx := t.Context()
	owned, err := streams.EnsureWorker(ctx, js, e.owned)
	require.NoError(t, err)
	o := cwworker.DefaultOptions()
	o.JS, o.Owned, o.Registerer, o.Log = js, owned, reg, log
	o.Concurrency, o.HandleTimeout, o.RetryDelay, o.MaxDeliver, o.AckWait = 4, time.Second, 50*time.Millisecond, e.owned.MaxDeliver, e.owned.AckWait
	if cfg.concurrency > 0 {
		o.Concurrency = cfg.concurrency
	}
	o.OrderGrace = 200 * time.Millisecond
	if cfg.orderGrace > 0 {
		o.OrderGrace = cfg.orderGrace
	}
	if cfg.earlyTTL > 0 {
		o.Limits.EarlyTTL = cfg.earlyTTL
	}
	if cfg.confirm > 0 {
		o.Limits.ConfirmTimeout = cfg.confirm
	}
	if cfg.maxAge > 0 {
		o.Limits.MaxAge = cfg.maxAge
	}
	if cfg.skew > 0 {
		o.Limits.SkewMargin = cfg.skew
	}
	if cfg.bucket != nil {
		o.Bucket = cfg.bucket(owned.Bucket)
	}
	if cfg.publisher != nil {
		o.Publisher = cfg.publisher(js)
	}
	o.API.Token = cfg.token
	if cfg.maxWaiters > 0 {
		o.API.MaxWaiters = cfg.maxWaiters
	}
	if cfg.maxInFlight > 0 {
		o.API.MaxInFlight = cfg.maxInFlight
	}
	if cfg.streamPing > 0 {
		o.API.StreamPing = cfg.streamPing
	}
	if cfg.seamURL != "" {
		co := seam.DefaultOptions()
		co.BaseURL, co.APIKey, co.Registerer, co.RetryBase = cfg.seamURL, cfg.seamKey, reg, 10*time.Millisecond
		co.MaxRPS, co.Burst = 1000, 1000 // tests are not rate limited unless they ask
		if cfg.seamRPS > 0 {
			co.MaxRPS, co.Burst = cfg.seamRPS, int(cfg.seamRPS)
		}
		client, err := seam.New(co)
		require.NoError(t, err)
		o.Seam = client
	}
	return o
}

func (e *env) startWorker(t testing.TB, cfg workerConfig) *worker {
	t.Helper()
	url := e.url
	if cfg.url != "" {
		url = cfg.url
	}
	_, js := natstest.Connect(t, url)
	w := &worker{reg: prometheus.NewRegistry(), logs: &bytes.Buffer{}, mu: &sync.Mutex{}}
	log := zerolog.New(lockedWriter{w.mu, w.logs})
	var err error
	w.w, err = cwworker.New(t.Context(), e.workerOptions(t, cfg, js, log, w.reg))
	require.NoError(t, err)
	require.NoError(t, w.w.Start(t.Context()))
	t.Cleanup(func() { _ = w.w.Stop(context.Background()) })
	w.api = httptest.NewServer(w.w.Handler())
	t.Cleanup(w.api.Close)
	return w
}

// stop stops the replica: its API, then its consumers.
func (w *worker) stop(t testing.TB) {
	t.Helper()
	w.api.Close()
	require.NoError(t, w.w.Stop(t.Context()))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// seamEvent publishes a Seam event into SEAM_EVENTS the way the receiver
// does, and returns its event_id. subjectID is the credential, access
// method or encoder id, by type.
func (e *env) seamEvent(t testing.TB, eventType, workspace, subjectID string, occurred time.Time, eventID string) string {
	t.Helper()
	id, err := e.trySeamEvent(eventType, workspace, subjectID, occurred, eventID)
	require.NoError(t, err)
	return id
}

// trySeamEvent is seamEvent without require, for use off the test goroutine.
func (e *env) trySeamEvent(eventType, workspace, subjectID string, occurred time.Time, eventID string) (string, error) {
	if eventID == "" {
		eventID = uuid.NewString()
	}
	ev := map[string]any{
		"event_id": eventID, "event_type": eventType, "workspace_id": workspace,
		"occurred_at": occurred.UTC().Format(time.RFC3339Nano), "created_at": occurred.UTC().Format(time.RFC3339Nano),
		"acs_system_id": uuid.NewString(),
	}
	switch {
	case strings.HasPrefix(eventType, "acs_credential."):
		ev["acs_credential_id"] = subjectID
	case strings.HasPrefix(eventType, "access_method."):
		ev["access_method_id"] = subjectID
		ev["access_grant_ids"] = []string{uuid.NewString()}
	case strings.HasPrefix(eventType, "acs_encoder."):
		ev["acs_encoder_id"] = subjectID
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return "", err
	}
	msg, err := streams.EventMsg(body, streams.Event{EventID: eventID, EventType: eventType, WorkspaceID: workspace, WebhookID: "msg_" + uuid.NewString()})
	if err != nil {
		return "", err
	}
	// Every copy is stored: as one that came after the stream's duplicate
	// window (which the worker must apply once all the same).
	msg.Header.Set(jetstream.MsgIDHeader, "evt:"+eventID+":"+uuid.NewString())
	_, err = e.js.PublishMsg(context.Background(), msg)
	return eventID, err
}

// outcomeLog collects every message on ENCODING_EVENTS.
type outcomeLog struct {
	mu   sync.Mutex
	msgs []outcome
	// byStatus counts msgs by status, so that waitCount costs the
	// benchmarks nothing per outcome.
	byStatus map[encoding.Status]int
	changed  chan struct{}
}

type outcome struct {
	Subject string
	MsgID   string
	Record  encoding.Record
}

func (o *outcomeLog) follow(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	cons, err := js.OrderedConsumer(t.Context(), streams.OutcomesStream, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var rec encoding.Record
		_ = json.Unmarshal(m.Data(), &rec)
		o.mu.Lock()
		o.msgs = append(o.msgs, outcome{Subject: m.Subject(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), Record: rec})
		o.byStatus[rec.Status]++
		close(o.changed)
		o.changed = make(chan struct{})
		o.mu.Unlock()
	})
	require.NoError(t, err)
	t.Cleanup(cc.Stop)
}

// count is how many outcome messages were published for id with status.
func (o *outcomeLog) count(id string, status encoding.Status) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, m := range o.msgs {
		if m.Record.EncodingID == id && m.Record.Status == status {
			n++
		}
	}
	return n
}

// waitCount blocks until n outcomes with status have arrived.
func (o *outcomeLog) waitCount(tb testing.TB, status encoding.Status, n int) {
	tb.Helper()
	timeout := time.After(60 * time.Second)
	for {
		o.mu.Lock()
		got := o.byStatus[status]
		ch := o.changed
		o.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			tb.Fatalf("%d of %d %s outcomes", got, n, status)
		}
	}
}

// wait blocks until an outcome for id with status has arrived.
func (o *outcomeLog) wait(t testing.TB, id string, status encoding.Status) encoding.Record {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		o.mu.Lock()
		for _, m := range o.msgs {
			if m.Record.EncodingID == id && m.Record.Status == status {
				o.mu.Unlock()
				require.Equal(t, "encodings."+m.Record.WorkspaceID+"."+string(status), m.Subject)
				return m.Record
			}
		}
		ch := o.changed
		o.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("no %s outcome for %s", status, id)
		}
	}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (w *worker) call(t testing.TB, method, path, token string, body any) response {
	t.Helper()
	r, err := w.try(method, path, token, body, nil)
	require.NoError(t, err)
	return r
}

// try is call without require, for use off the test goroutine.
func (w *worker) try(method, path, token string, body any, header http.Header) (response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.api.URL+path, rd)
	if err != nil {
		return response{}, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := w.api.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

func (r response) record(t testing.TB) encoding.Record {
	t.Helper()
	var rec encoding.Record
	require.NoError(t, json.Unmarshal(r.Body, &rec), "body %s", r.Body)
	return rec
}

func (r response) errType(t testing.TB) string {
	t.Helper()
	var env struct {
		Error struct{ Type, Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &env), "body %s", r.Body)
	require.NotEmpty(t, env.Error.Message)
	return env.Error.Type
}

// register posts a track-only registration and returns the record.
func (w *worker) register(t testing.TB, credential, accessMethod, encoder string) encoding.Record {
	t.Helper()
	r := w.call(t, http.MethodPost, "/v1/encodings", "", map[string]string{
		"workspace_id": ws, "acs_encoder_id": encoder, "acs_credential_id": credential,
		"access_method_id": accessMethod, "action_attempt_id": uuid.NewString(),
	})
	require.Equal(t, http.StatusCreated, r.Status, "body %s", r.Body)
	return r.record(t)
}

// waitFinal long-polls the record until it is final (a KV watch behind).
func (w *worker) waitFinal(t testing.TB, id string) encoding.Record {
	t.Helper()
	r := w.call(t, http.MethodGet, "/v1/encodings/"+id+"?wait=15s", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	return r.record(t)
}

// counter is the value of a worker metric summed over the series with the
// given labels (0 if absent).
func (w *worker) counter(name string, labels ...string) float64 {
	mfs, err := promtest.Gather(w.reg)
	if err != nil {
		return -1
	}
	return max(mfs.Value(name, labels...), 0)
}

// waitResult waits until the workers together counted n events with result.
func waitResult(t testing.TB, result string, n int, ws ...*worker) {
	t.Helper()
	require.Eventually(t, func() bool {
		total := 0.0
		for _, w := range ws {
			total += w.counter("cardwire_worker_events_total", "result", result)
		}
		return total >= float64(n)
	}, 15*time.Second, 5*time.Millisecond, "waiting for %d %s events", n, result)
}

// revisions lists the revisions published for id, in arrival order.
func (o *outcomeLog) revisions(id string) []uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []uint64
	for _, m := range o.msgs {
		if m.Record.EncodingID == id {
			out = append(out, m.Record.Revision)
		}
	}
	return out
}

// all is every outcome so far.
func (o *outcomeLog) all() []outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.msgs)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// simKey is the API key every test simulator expects.
const simKey = "seam_test_worker"

// newSim starts the Seam simulator behind an HTTP server and returns it
// with the server's URL. wrap, when set, sees each request first (to hold
// or count some).
func newSim(t testing.TB, encodeDelay time.Duration, wrap func(http.Handler) http.Handler) (*seamsim.Sim, string) {
	t.Helper()
	sim, err := seamsim.New(seamsim.Options{APIKey: simKey, WorkspaceID: ws, EncodeDelay: encodeDelay, Log: zerolog.Nop()})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	var h http.Handler = sim.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return sim, srv.URL
}

// holdEncode is a wrap for newSim: the first encode call closes inEncode
// and is answered only once release is closed.
func holdEncode(inEncode, release chan struct{}) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/acs/encoders/encode_credential" {
				close(inEncode)
				<-release
			}
			next.ServeHTTP(rw, r)
		})
	}
}

// listAll walks GET /v1/encodings?<query>&limit=<limit> page by page and
// returns every record, checking that no page is larger than the limit.
func (w *worker) listAll(t testing.TB, query string, limit int) []encoding.Record {
	t.Helper()
	var out []encoding.Record
	cursor := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 1000)
		r := w.call(t, http.MethodGet, fmt.Sprintf("/v1/encodings?%s&limit=%d&cursor=%s", query, limit, cursor), "", nil)
		require.Equal(t, http.StatusOK, r.Status, "list: body %s", r.Body)
		var page struct {
			Encodings  []encoding.Record `json:"encodings"`
			NextCursor string            `json:"next_cursor"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &page))
		require.LessOrEqual(t, len(page.Encodings), limit)
		out = append(out, page.Encodings...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
}
