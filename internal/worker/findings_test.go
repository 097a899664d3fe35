package worker_test

// One test per finding of the review. Each asserts the behaviour the
// rebuilt worker must have, so on the reviewed code (0348d8c) they fail.
// Faults are injected by wrapping the bucket and the publisher the worker
// is given (Options.Bucket and .Publisher), never by stopping NATS. Each
// was run against 0348d8c (with that commit's wiring) and failed there.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/store"
	"github.com/cardwire/cardwire/internal/streams"
)

// errInjected is what a wrapped call answers when a hook says it fails.
var errInjected = errors.New("injected fault (test)")

// faults holds the hooks the wrappers consult before each call. A nil hook
// lets every call through. Hooks are called without faults' lock held.
type faults struct {
	mu sync.Mutex
	// kv is asked before a bucket call; op is get, create, update, put,
	// delete or purge.
	kv func(op, key string) error
	// pub is asked before a publish, with its subject.
	pub func(subject string) error
	// partialLists makes every key listing stop after its first key, as a
	// listing whose context ends half-way does.
	partialLists bool
}

func (f *faults) setKV(h func(op, key string) error)  { f.mu.Lock(); f.kv = h; f.mu.Unlock() }
func (f *faults) setPub(h func(subject string) error) { f.mu.Lock(); f.pub = h; f.mu.Unlock() }

func (f *faults) clear() {
	f.mu.Lock()
	f.kv, f.pub = nil, nil
	f.mu.Unlock()
}

func (f *faults) checkKV(op, key string) error {
	f.mu.Lock()
	h := f.kv
	f.mu.Unlock()
	if h == nil {
		return nil
	}
	return h(op, key)
}

func (f *faults) checkPub(subject string) error {
	f.mu.Lock()
	h := f.pub
	f.mu.Unlock()
	if h == nil {
		return nil
	}
	return h(subject)
}

func (f *faults) partial() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.partialLists
}

// failOnce returns a hook that fails the first call match accepts, once.
// fired reports whether it has.
func failOnce(match func(op, name string) bool) (hook func(op, name string) error, fired func() bool) {
	var done atomic.Bool
	return func(op, name string) error {
		if match(op, name) && done.CompareAndSwap(false, true) {
			return fmt.Errorf("%s %s: %w", op, name, errInjected)
		}
		return nil
	}, done.Load
}

// faultyKV is the ENCODINGS bucket with faults. Embedding the interface
// keeps every other method, whatever subset the service uses.
type faultyKV struct {
	jetstream.KeyValue
	f *faults
}

func (k faultyKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if err := k.f.checkKV("get", key); err != nil {
		return nil, err
	}
	return k.KeyValue.Get(ctx, key)
}

func (k faultyKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	if err := k.f.checkKV("create", key); err != nil {
		return 0, err
	}
	return k.KeyValue.Create(ctx, key, value, opts...)
}

func (k faultyKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	if err := k.f.checkKV("update", key); err != nil {
		return 0, err
	}
	return k.KeyValue.Update(ctx, key, value, revision)
}

func (k faultyKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := k.f.checkKV("put", key); err != nil {
		return 0, err
	}
	return k.KeyValue.Put(ctx, key, value)
}

func (k faultyKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	return k.Put(ctx, key, []byte(value))
}

func (k faultyKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if err := k.f.checkKV("delete", key); err != nil {
		return err
	}
	return k.KeyValue.Delete(ctx, key, opts...)
}

func (k faultyKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	if err := k.f.checkKV("purge", key); err != nil {
		return err
	}
	return k.KeyValue.Purge(ctx, key, opts...)
}

func (k faultyKV) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	l, err := k.KeyValue.ListKeysFiltered(ctx, filters...)
	if err != nil || !k.f.partial() {
		return l, err
	}
	return newFirstKeyLister(l), nil
}

func (k faultyKV) ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyLister, error) {
	l, err := k.KeyValue.ListKeys(ctx, opts...)
	if err != nil || !k.f.partial() {
		return l, err
	}
	return newFirstKeyLister(l), nil
}

func (k faultyKV) Keys(ctx context.Context, opts ...jetstream.WatchOpt) ([]string, error) {
	keys, err := k.KeyValue.Keys(ctx, opts...)
	if err != nil || !k.f.partial() || len(keys) <= 1 {
		return keys, err
	}
	return keys[:1], nil
}

// firstKeyLister passes on the first key of a listing and then closes its
// channel, with no error anywhere: what a lister whose context ended
// mid-listing looks like to its reader.
type firstKeyLister struct {
	inner jetstream.KeyLister
	out   chan string
}

func newFirstKeyLister(inner jetstream.KeyLister) *firstKeyLister {
	l := &firstKeyLister{inner: inner, out: make(chan string, 1)}
	go func() {
		defer close(l.out)
		if k, ok := <-inner.Keys(); ok {
			l.out <- k
		}
	}()
	return l
}

func (l *firstKeyLister) Keys() <-chan string { return l.out }
func (l *firstKeyLister) Stop() error         { return l.inner.Stop() }

// faultyJS is the publisher with faults.
type faultyJS struct {
	jetstream.JetStream
	f *faults
}

func (p faultyJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if err := p.f.checkPub(m.Subject); err != nil {
		return nil, err
	}
	return p.JetStream.PublishMsg(ctx, m, opts...)
}

func (p faultyJS) Publish(ctx context.Context, subj string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return p.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: data}, opts...)
}

func (p faultyJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if err := p.f.checkPub(m.Subject); err != nil {
		return nil, err
	}
	return p.JetStream.PublishMsgAsync(m, opts...)
}

// withFaults wraps a worker's bucket and publisher with f.
func withFaults(cfg workerConfig, f *faults) workerConfig {
	cfg.bucket = func(kv jetstream.KeyValue) store.KV { return faultyKV{kv, f} }
	cfg.publisher = func(js jetstream.JetStream) publisherJS { return faultyJS{js, f} }
	return cfg
}

// registerBody is a track-only registration (the caller started the encode).
func registerBody(credential, encoder string) map[string]string {
	return map[string]string{
		"workspace_id": ws, "acs_encoder_id": encoder, "acs_credential_id": credential,
		"action_attempt_id": uuid.NewString(),
	}
}

// waitAnyResult waits until the workers together counted n events whose
// result is one of results.
func waitAnyResult(t testing.TB, n int, results []string, ws ...*worker) {
	t.Helper()
	require.Eventually(t, func() bool {
		total := 0.0
		for _, w := range ws {
			for _, r := range results {
				total += w.counter("cardwire_worker_events_total", "result", r)
			}
		}
		return total >= float64(n)
	}, 15*time.Second, 5*time.Millisecond, "waiting for %d events with result in %v", n, results)
}

// midpoint is halfway between a and b.
func midpoint(a, b time.Time) time.Time { return a.Add(b.Sub(a) / 2) }

// statuses is the sequence of outcome statuses published for id.
func (o *outcomeLog) statuses(id string) []encoding.Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []encoding.Status
	for _, m := range o.msgs {
		if m.Record.EncodingID == id {
			out = append(out, m.Record.Status)
		}
	}
	return out
}

// pendingFor lists (GET /v1/encodings, every page) the pending records of
// the workspace for a credential.
func pendingFor(t testing.TB, w *worker, credential string) []encoding.Record {
	t.Helper()
	var out []encoding.Record
	for _, rec := range w.listAll(t, "status=pending&workspace_id="+ws, 500) {
		if rec.AcsCredentialID == credential && rec.Status == encoding.StatusPending {
			out = append(out, rec)
		}
	}
	return out
}

// Finding 1 (cancel): A is canceled; A's own issued, which occurred while A
// was pending, arrives after the cancel. It belongs to A, so it must not
// confirm B, the next encoding of the same credential, at registration.
func TestFinding1FalseIssuedAfterCancel(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{})
	cred, encoder := uuid.NewString(), uuid.NewString()

	a := w.register(t, cred, "", encoder)
	e.outcomes.wait(t, a.EncodingID, encoding.StatusPending)
	r := w.call(t, http.MethodDelete, "/v1/encodings/"+a.EncodingID, "", nil)
	require.Equal(t, http.StatusOK, r.Status, "cancel A: body %s", r.Body)
	canceled := r.record(t)
	require.Equal(t, encoding.StatusCanceled, canceled.Status)
	require.NotNil(t, canceled.ResolvedAt)

	// A's own issued: it occurred after A was requested and before the
	// cancel, and arrives late.
	occurred := midpoint(a.RequestedAt, *canceled.ResolvedAt)
	require.True(t, occurred.After(a.RequestedAt) && occurred.Before(*canceled.ResolvedAt))
	evID := e.seamEvent(t, "acs_credential.issued", ws, cred, occurred, "")
	waitAnyResult(t, 1, []string{"late", "conflict"}, w)

	// The desk encodes the same credential again: B.
	r = w.call(t, http.MethodPost, "/v1/encodings", "", registerBody(cred, encoder))
	require.Equal(t, http.StatusCreated, r.Status, "register B: body %s", r.Body)
	b := r.record(t)
	require.Equal(t, encoding.StatusPending, b.Status,
		"B was answered %s at registration with A's late event %s (B's event_id %q)", b.Status, evID, b.EventID)
	require.Empty(t, b.EventID)

	got := w.call(t, http.MethodGet, "/v1/encodings/"+b.EncodingID, "", nil)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, encoding.StatusPending, got.record(t).Status, "B must stay pending: no card touched the encoder")
	require.Empty(t, got.record(t).EventID)
}

// Finding 1 (reconcile): A is settled issued by reconcile at its deadline
// (the Seam simulator says the attempt succeeded; its webhook is late). A's
// webhook then arrives; it must not confirm B.
func TestFinding1FalseIssuedAfterReconcile(t *testing.T) {
	_, simURL := newSim(t, 50*time.Millisecond, nil)

	e := newEnv(t)
	w := e.startWorker(t, workerConfig{seamURL: simURL, seamKey: simKey, confirm: time.Second, maxAge: 2 * time.Minute})
	cred, encoder := uuid.NewString(), uuid.NewString()

	// A: the worker starts the encode; the simulator sends no webhook (no
	// webhook URL), so A is settled by asking Seam at its deadline.
	r := w.call(t, http.MethodPost, "/v1/encodings", "", map[string]string{
		"workspace_id": ws, "acs_encoder_id": encoder, "acs_credential_id": cred,
	})
	require.Equal(t, http.StatusAccepted, r.Status, "start A: body %s", r.Body)
	a := r.record(t)
	settled := w.waitFinal(t, a.EncodingID)
	require.Equal(t, encoding.StatusIssued, settled.Status)
	require.Equal(t, encoding.ResolvedByReconcile, settled.ResolvedBy)
	require.NotNil(t, settled.ResolvedAt)

	occurred := midpoint(a.RequestedAt, *settled.ResolvedAt)
	evID := e.seamEvent(t, "acs_credential.issued", ws, cred, occurred, "")
	waitAnyResult(t, 1, []string{"late", "conflict"}, w)

	// B for the same credential, registered by the caller (its deadline a
	// minute away, so nothing but an event could settle it here).
	body := registerBody(cred, encoder)
	body["confirm_timeout"] = "1m"
	r = w.call(t, http.MethodPost, "/v1/encodings", "", body)
	require.Equal(t, http.StatusCreated, r.Status, "register B: body %s", r.Body)
	b := r.record(t)
	require.Equal(t, encoding.StatusPending, b.Status,
		"B was answered %s at registration with A's late event %s (B's event_id %q)", b.Status, evID, b.EventID)
	require.Empty(t, b.EventID)

	got := w.call(t, http.MethodGet, "/v1/encodings/"+b.EncodingID, "", nil)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, encoding.StatusPending, got.record(t).Status)
	require.Empty(t, got.record(t).EventID)
}

// Finding 2: a registration with an Idempotency-Key fails half-way (a NATS
// blip begins at the deadline timer or the record write and lasts until the
// request has answered, so its clean-up fails too). A retry with the same
// key and body must complete the registration, not answer 409 for 24 h.
func TestFinding2IdempotencyKeyNotStuck(t *testing.T) {
	e := newEnv(t)
	f := &faults{}
	w := e.startWorker(t, withFaults(workerConfig{}, f))

	t.Run("retry after a failed step completes", func(t *testing.T) {
		// The blip: from the first timer publish or record create on, every
		// write and publish fails until it is lifted. Reads still work.
		var mu sync.Mutex
		armed, outage, triggered := true, false, ""
		step := func(op, name string) error {
			mu.Lock()
			defer mu.Unlock()
			if op == "get" {
				return nil
			}
			if armed && ((op == "publish" && strings.HasPrefix(name, streams.SchedulesSubjectPrefix+".")) ||
				(op == "create" && strings.HasPrefix(name, "enc."))) {
				armed, outage, triggered = false, true, op+" "+name
			}
			if outage {
				return fmt.Errorf("%s %s: %w", op, name, errInjected)
			}
			return nil
		}
		f.setKV(step)
		f.setPub(func(subject string) error { return step("publish", subject) })
		defer f.clear()

		key := http.Header{"Idempotency-Key": {"desk-" + uuid.NewString()}}
		cred := uuid.NewString()
		body := registerBody(cred, uuid.NewString())
		first, err := w.try(http.MethodPost, "/v1/encodings", "", body, key)
		require.NoError(t, err)
		mu.Lock()
		outage, armed = false, false // the blip is over
		require.NotEmpty(t, triggered, "no timer publish or record create happened during the registration")
		mu.Unlock()
		t.Logf("first POST: %d (blip began at %s)", first.Status, triggered)
		require.GreaterOrEqual(t, first.Status, 500, "the first POST ran into the blip: body %s", first.Body)

		again, err := w.try(http.MethodPost, "/v1/encodings", "", body, key)
		require.NoError(t, err)
		ok := again.Status == http.StatusCreated ||
			(again.Status == http.StatusOK && again.Header.Get("Idempotent-Replayed") == "true")
		require.True(t, ok, "the retry with the same Idempotency-Key must complete the registration; got %d %s", again.Status, again.Body)
		rec := again.record(t)
		require.Equal(t, encoding.StatusPending, rec.Status)
		require.Equal(t, cred, rec.AcsCredentialID)

		got := w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil)
		require.Equal(t, http.StatusOK, got.Status, "the registration is readable: body %s", got.Body)
		require.Equal(t, encoding.StatusPending, got.record(t).Status)
	})

	t.Run("same key with another body is 422", func(t *testing.T) {
		key := http.Header{"Idempotency-Key": {"desk-" + uuid.NewString()}}
		first, err := w.try(http.MethodPost, "/v1/encodings", "", registerBody(uuid.NewString(), uuid.NewString()), key)
		require.NoError(t, err)
		require.Equal(t, http.StatusCreated, first.Status, "body %s", first.Body)
		other, err := w.try(http.MethodPost, "/v1/encodings", "", registerBody(uuid.NewString(), uuid.NewString()), key)
		require.NoError(t, err)
		require.Equal(t, http.StatusUnprocessableEntity, other.Status,
			"an Idempotency-Key reused with another body: got %d %s", other.Status, other.Body)
		require.Equal(t, "idempotency_key_reused", other.errType(t))
	})
}

// outcomeMsg is one message of ENCODING_EVENTS as stored.
type outcomeMsg struct {
	Seq     uint64
	Subject string
	MsgID   string
	Body    map[string]any
}

// storedOutcomes reads every message of ENCODING_EVENTS, in stream order.
func storedOutcomes(t testing.TB, js jetstream.JetStream) []outcomeMsg {
	t.Helper()
	ctx := t.Context()
	st, err := js.Stream(ctx, streams.OutcomesStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	var out []outcomeMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		dec := json.NewDecoder(bytes.NewReader(m.Data))
		dec.UseNumber()
		var body map[string]any
		require.NoError(t, dec.Decode(&body), "outcome %d: %s", seq, m.Data)
		out = append(out, outcomeMsg{Seq: seq, Subject: m.Subject, MsgID: m.Header.Get(jetstream.MsgIDHeader), Body: body})
	}
	return out
}

// Finding 3: the outcome of a cancel goes out from the state change, not
// from the request: a failed publish does not fail the DELETE, and the
// canceled outcome is published exactly once. Every outcome carries the
// record's revision, and its message id is <encoding_id>:<revision>.
func TestFinding3CancelPublishedOnce(t *testing.T) {
	e := newEnv(t)
	f := &faults{}
	w := e.startWorker(t, withFaults(workerConfig{}, f))
	a := w.register(t, uuid.NewString(), "", uuid.NewString())
	e.outcomes.wait(t, a.EncodingID, encoding.StatusPending)

	canceledSubject := "encodings." + ws + ".canceled"
	hook, fired := failOnce(func(_, subject string) bool { return subject == canceledSubject })
	f.setPub(func(subject string) error { return hook("publish", subject) })

	t.Run("cancel answers 200", func(t *testing.T) {
		r := w.call(t, http.MethodDelete, "/v1/encodings/"+a.EncodingID, "", nil)
		require.Equal(t, http.StatusOK, r.Status, "DELETE with the canceled publish failing once: body %s", r.Body)
		require.Equal(t, encoding.StatusCanceled, r.record(t).Status)
	})
	t.Logf("canceled publish failed once: %v", fired())

	t.Run("one canceled outcome", func(t *testing.T) {
		e.outcomes.wait(t, a.EncodingID, encoding.StatusCanceled)
		require.True(t, fired(), "the canceled outcome did not go through ServiceOptions.Publisher: no fault was injected")
		// Anything published for A before this probe's outcome is in the
		// log once the probe's is (one stream, one ordered consumer).
		probe := w.register(t, uuid.NewString(), "", uuid.NewString())
		e.outcomes.wait(t, probe.EncodingID, encoding.StatusPending)
		require.Equal(t, 1, e.outcomes.count(a.EncodingID, encoding.StatusCanceled), "canceled outcomes of %s", a.EncodingID)
	})

	t.Run("revision and message id", func(t *testing.T) {
		msgs := storedOutcomes(t, e.js)
		byEnc := map[string][]outcomeMsg{}
		for _, m := range msgs {
			id, _ := m.Body["encoding_id"].(string)
			byEnc[id] = append(byEnc[id], m)
		}
		require.NotEmpty(t, byEnc[a.EncodingID])
		for id, ms := range byEnc {
			last := int64(-1)
			for _, m := range ms {
				rev, ok := m.Body["revision"].(json.Number)
				require.True(t, ok, "outcome %d of %s (%s) has no numeric revision field: %v", m.Seq, id, m.Body["status"], m.Body)
				n, err := rev.Int64()
				require.NoError(t, err, "revision %s", rev)
				require.Greater(t, n, last, "revisions of %s strictly increase", id)
				last = n
				require.Equal(t, id+":"+rev.String(), m.MsgID, "message id of outcome %d", m.Seq)
			}
		}
	})
}

// Finding 4: on a 3-node cluster with every stream and the bucket on 3
// replicas, two workers on different nodes, webhooks arriving before and
// after their registrations at the same time: every encoding is settled by
// its own event.
func TestFinding4ClusterHandshake(t *testing.T) {
	c := natstest.RunCluster(t, 3)
	_, js := natstest.Connect(t, c.Nodes[0].ClientURL())
	ctx := t.Context()
	eo := streams.DefaultEventsStreamOptions()
	eo.Replicas = 3
	require.NoError(t, streams.EnsureEventsStream(ctx, js, eo))
	owned := streams.DefaultWorkerOptions()
	owned.Replicas, owned.AckWait, owned.MaxDeliver = 3, 5*time.Second, 8
	_, err := streams.EnsureWorker(ctx, js, owned)
	require.NoError(t, err)
	e := &env{nats: c.Nodes[0], url: c.Nodes[0].ClientURL(), js: js, owned: owned, outcomes: &outcomeLog{byStatus: map[encoding.Status]int{}, changed: make(chan struct{})}}
	e.outcomes.follow(t, js)
	workers := []*worker{
		e.startWorker(t, workerConfig{url: c.Nodes[1].ClientURL()}),
		e.startWorker(t, workerConfig{url: c.Nodes[2].ClientURL()}),
	}

	const n = 160
	type item struct {
		webhookFirst bool
		cred, evID   string
		encID        string
		err          error
		final        encoding.Record
	}
	items := make([]*item, n)
	for i := range n {
		items[i] = &item{webhookFirst: (i/2)%2 == 0, cred: uuid.NewString(), evID: uuid.NewString()}
	}
	var wg sync.WaitGroup
	start := make(chan struct{}) // every pair starts at once
	for i, it := range items {
		w := workers[i%2]
		wg.Go(func() {
			<-start
			send := func() error {
				_, err := e.trySeamEvent("acs_credential.issued", ws, it.cred, time.Now(), it.evID)
				return err
			}
			register := func() error {
				r, err := w.try(http.MethodPost, "/v1/encodings", "", registerBody(it.cred, uuid.NewString()), nil)
				if err != nil {
					return err
				}
				if r.Status != http.StatusCreated {
					return fmt.Errorf("register: %d %s", r.Status, r.Body)
				}
				var rec encoding.Record
				if err := json.Unmarshal(r.Body, &rec); err != nil {
					return err
				}
				it.encID = rec.EncodingID
				return nil
			}
			first, second := register, send
			if it.webhookFirst {
				first, second = send, register
			}
			if it.err = first(); it.err == nil {
				it.err = second()
			}
		})
	}
	close(start)
	wg.Wait()
	for i, it := range items {
		require.NoError(t, it.err, "encoding %d", i)
	}
	// Long polls, all at once: each answers when its encoding is final, or
	// after 20 s with it still pending.
	for i, it := range items {
		w := workers[(i+1)%2]
		wg.Go(func() {
			r, err := w.try(http.MethodGet, "/v1/encodings/"+it.encID+"?wait=20s", "", nil, nil)
			if err == nil && r.Status != http.StatusOK {
				err = fmt.Errorf("get: %d %s", r.Status, r.Body)
			}
			if err == nil {
				err = json.Unmarshal(r.Body, &it.final)
			}
			it.err = err
		})
	}
	wg.Wait()

	for _, c := range []struct {
		Name         string
		WebhookFirst bool
	}{{"webhook before registration", true}, {"webhook after registration", false}} {
		t.Run(c.Name, func(t *testing.T) {
			var bad []string
			total := 0
			for i, it := range items {
				if it.webhookFirst != c.WebhookFirst {
					continue
				}
				total++
				require.NoError(t, it.err, "encoding %d", i)
				if it.final.Status != encoding.StatusIssued || it.final.EventID != it.evID {
					bad = append(bad, fmt.Sprintf("%d: %s (event_id %q)", i, it.final.Status, it.final.EventID))
				}
			}
			require.Empty(t, bad, "%d of %d encodings not issued by their own event", len(bad), total)
		})
	}
}

// Finding 5: the final state does not depend on the order in which an
// issued and a later failure event of the same credential arrive.
func TestFinding5OrderDoesNotMatter(t *testing.T) {
	// Failure events are held for the order grace (the harness sets
	// 200ms) before being applied: after the final state, nothing else may
	// be published for this long.
	const quiet = 2 * time.Second
	testCases := []struct {
		Name         string
		FailureType  string
		FailureFirst bool
	}{
		{"deleted 1s after issued, issued arrives first", "acs_credential.deleted", false},
		{"deleted 1s after issued, deleted arrives first", "acs_credential.deleted", true},
		{"invalidated 1s after issued, issued arrives first", "acs_credential.invalidated", false},
		{"invalidated 1s after issued, invalidated arrives first", "acs_credential.invalidated", true},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			// One server and worker per case: its consumer and counters
			// see this case's events only.
			e := newEnv(t)
			w := e.startWorker(t, workerConfig{})
			cred := uuid.NewString()
			rec := w.register(t, cred, "", uuid.NewString())
			e.outcomes.wait(t, rec.EncodingID, encoding.StatusPending)
			at := time.Now()
			issuedID := uuid.NewString()
			first := func() { e.seamEvent(t, "acs_credential.issued", ws, cred, at, issuedID) }
			second := func() { e.seamEvent(t, c.FailureType, ws, cred, at.Add(time.Second), "") }
			firstType := "acs_credential.issued"
			if c.FailureFirst {
				first, second = second, first
				firstType = c.FailureType
			}
			first()
			waitTaken(t, e, w, firstType)
			second()

			got := w.waitFinal(t, rec.EncodingID)
			require.Equal(t, encoding.StatusIssued, got.Status, "final status (error %+v)", got.Error)
			require.Equal(t, issuedID, got.EventID)
			e.outcomes.wait(t, rec.EncodingID, encoding.StatusIssued)
			require.Never(t, func() bool {
				return !slices.Equal(e.outcomes.statuses(rec.EncodingID), []encoding.Status{encoding.StatusPending, encoding.StatusIssued})
			}, quiet, 50*time.Millisecond, "outcomes of %s", rec.EncodingID)
			require.Equal(t, []encoding.Status{encoding.StatusPending, encoding.StatusIssued}, e.outcomes.statuses(rec.EncodingID))
			final := w.call(t, http.MethodGet, "/v1/encodings/"+rec.EncodingID, "", nil).record(t)
			require.Equal(t, encoding.StatusIssued, final.Status)
		})
	}
}

// waitTaken waits until the worker has taken the last event published into
// SEAM_EVENTS (of eventType), so that the next one arrives after it: the
// shared consumer delivered it, and then acked it or counted it. A worker
// that holds it unacked and uncounted (an order grace) is given up on after
// a second, still well inside the grace.
func waitTaken(t testing.TB, e *env, w *worker, eventType string) {
	t.Helper()
	ctx := t.Context()
	st, err := e.js.Stream(ctx, streams.EventsStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	seq := info.State.LastSeq
	cons, err := e.js.Consumer(ctx, streams.EventsStream, streams.WorkerConsumer)
	require.NoError(t, err)
	var ci *jetstream.ConsumerInfo
	require.Eventually(t, func() bool {
		ci, err = cons.Info(ctx)
		return err == nil && ci.Delivered.Stream >= seq
	}, 10*time.Second, 5*time.Millisecond, "event %d (%s) delivered to the worker", seq, eventType)
	taken := func() bool {
		if w.counter("cardwire_worker_events_total", "event_type", eventType) > 0 {
			return true
		}
		ci, err := cons.Info(ctx)
		return err == nil && ci.AckFloor.Stream >= seq
	}
	for deadline := time.Now().Add(time.Second); !taken(); {
		if time.Now().After(deadline) {
			t.Logf("event %d (%s) delivered but neither acked nor counted after 1s; sending the next", seq, eventType)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Finding 6: a track-only worker cannot ask Seam at a deadline, so it
// extends the encoding up to the maximum age instead of expiring it at the
// first deadline; a webhook after the confirm timeout still settles it.
func TestFinding6TrackOnlyExtends(t *testing.T) {
	e := newEnv(t)
	w := e.startWorker(t, workerConfig{confirm: time.Second, maxAge: time.Minute})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	require.Eventually(t, func() bool {
		return w.counter("cardwire_worker_deadlines_total") > 0
	}, 15*time.Second, 10*time.Millisecond, "the first deadline was handled")
	t.Logf("deadlines: extended %v, expired %v",
		w.counter("cardwire_worker_deadlines_total", "result", "extended"), w.counter("cardwire_worker_deadlines_total", "result", "expired"))

	evID := e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	got := w.waitFinal(t, rec.EncodingID)
	require.Equal(t, encoding.StatusIssued, got.Status, "webhook after the confirm timeout, long before the maximum age (error %+v)", got.Error)
	require.Equal(t, encoding.ResolvedByWebhook, got.ResolvedBy)
	require.Equal(t, evID, got.EventID)
}

// Finding 7: a registration whose record is stored answers with it; a
// failure of any later step (an index write, a publish) does not turn it
// into a 5xx. A 5xx means nothing was stored, and the credential is free.
func TestFinding7NoErrorAfterStoredRegistration(t *testing.T) {
	e := newEnv(t)
	f := &faults{}
	w := e.startWorker(t, withFaults(workerConfig{}, f))

	// A write of a key that is neither a record (enc.*) nor an idempotency
	// key (idem.*): indexes and whatever else the registration writes.
	isOtherWrite := func(op, key string) bool {
		switch op {
		case "create", "update", "put":
		default:
			return false
		}
		return !strings.HasPrefix(key, "enc.") && !strings.HasPrefix(key, "idem.")
	}
	nthOtherWrite := func(n int) func(op, key string) bool {
		var seen atomic.Int32
		return func(op, key string) bool { return isOtherWrite(op, key) && int(seen.Add(1)) == n }
	}
	testCases := []struct {
		Name  string
		KV    func(op, key string) bool
		Pub   func(subject string) bool
		Label string
	}{
		{Name: "first other write fails", KV: nthOtherWrite(1)},
		{Name: "second other write fails", KV: nthOtherWrite(2)},
		{Name: "third other write fails", KV: nthOtherWrite(3)},
		{Name: "fourth other write fails", KV: nthOtherWrite(4)},
		{Name: "pending outcome publish fails", Pub: func(s string) bool { return s == "encodings."+ws+".pending" }},
		{Name: "deadline timer publish fails", Pub: func(s string) bool { return strings.HasPrefix(s, streams.SchedulesSubjectPrefix+".") }},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var fired func() bool
			var hitName atomic.Value
			hitName.Store("")
			if c.KV != nil {
				var hook func(op, name string) error
				hook, fired = failOnce(c.KV)
				f.setKV(func(op, key string) error {
					err := hook(op, key)
					if err != nil {
						hitName.Store(op + " " + key)
					}
					return err
				})
			} else {
				var hook func(op, name string) error
				hook, fired = failOnce(func(_, s string) bool { return c.Pub(s) })
				f.setPub(func(s string) error {
					err := hook("publish", s)
					if err != nil {
						hitName.Store("publish " + s)
					}
					return err
				})
			}
			cred, encoder := uuid.NewString(), uuid.NewString()
			r := w.call(t, http.MethodPost, "/v1/encodings", "", registerBody(cred, encoder))
			f.clear()
			t.Logf("fault fired: %v (%s); POST answered %d", fired(), hitName.Load(), r.Status)
			stored := pendingFor(t, w, cred)

			if r.Status >= 500 {
				require.Empty(t, stored, "POST answered %d (%s) but a pending record for the credential is stored", r.Status, r.Body)
				// Nothing is left behind: the registration can be made again.
				r = w.call(t, http.MethodPost, "/v1/encodings", "", registerBody(cred, encoder))
				require.Equal(t, http.StatusCreated, r.Status, "register again after the 5xx: body %s", r.Body)
				stored = pendingFor(t, w, cred)
			}
			require.Equal(t, http.StatusCreated, r.Status, "body %s", r.Body)
			rec := r.record(t)
			require.Equal(t, encoding.StatusPending, rec.Status)
			require.Len(t, stored, 1)
			require.Equal(t, rec.EncodingID, stored[0].EncodingID, "the answer is the stored record")
			// And a webhook settles it.
			evID := e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
			got := w.waitFinal(t, rec.EncodingID)
			require.Equal(t, encoding.StatusIssued, got.Status)
			require.Equal(t, evID, got.EventID)
		})
	}
}

// Finding 8: an encoder removal fails every pending encoding on the
// encoder, or is retried; a listing that stops early (no error) must never
// leave some failed and the event acked.
func TestFinding8EncoderRemovedAllOrError(t *testing.T) {
	e := newEnv(t)
	f := &faults{}
	w := e.startWorker(t, withFaults(workerConfig{}, f))
	encoder := uuid.NewString()
	var recs []encoding.Record
	for range 3 {
		rec := w.register(t, uuid.NewString(), "", encoder)
		e.outcomes.wait(t, rec.EncodingID, encoding.StatusPending)
		recs = append(recs, rec)
	}
	f.mu.Lock()
	f.partialLists = true
	f.mu.Unlock()

	e.seamEvent(t, "acs_encoder.removed", ws, encoder, time.Now(), "")
	const typ = "acs_encoder.removed"
	// Handled to an end: acked (any result but retried or dead_lettered)
	// or given up on.
	acked := func() float64 {
		return w.counter("cardwire_worker_events_total", "event_type", typ) -
			w.counter("cardwire_worker_events_total", "event_type", typ, "result", "retried") -
			w.counter("cardwire_worker_events_total", "event_type", typ, "result", "dead_lettered")
	}
	require.Eventually(t, func() bool {
		return acked() > 0 || w.counter("cardwire_worker_events_total", "event_type", typ, "result", "dead_lettered") > 0
	}, 30*time.Second, 10*time.Millisecond, "the removal was acked or dead-lettered")
	t.Logf("acked %v, retried %v, dead-lettered %v", acked(),
		w.counter("cardwire_worker_events_total", "event_type", typ, "result", "retried"),
		w.counter("cardwire_worker_events_total", "event_type", typ, "result", "dead_lettered"))
	if acked() == 0 {
		return // never acked: not settled as if it had been applied to all
	}

	finals := make([]encoding.Record, len(recs))
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Go(func() {
			r, err := w.try(http.MethodGet, "/v1/encodings/"+rec.EncodingID+"?wait=10s", "", nil, nil)
			if err == nil {
				err = json.Unmarshal(r.Body, &finals[i])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	failed := 0
	for i := range recs {
		require.NoError(t, errs[i])
		if finals[i].Status == encoding.StatusFailed && finals[i].Error != nil && finals[i].Error.Type == encoding.ErrorEncoderRemoved {
			failed++
		}
	}
	require.Equal(t, len(recs), failed, "the removal was acked with %d of %d encodings on the encoder failed (statuses %s, %s, %s)",
		failed, len(recs), finals[0].Status, finals[1].Status, finals[2].Status)
}
