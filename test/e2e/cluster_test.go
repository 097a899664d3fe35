package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

// TestClusterScaleOut runs cardwire scaled out on a three-node JetStream
// cluster, as the production overlay does (SEAM_EVENTS_REPLICAS=3,
// ENCODINGS_REPLICAS=3): two receivers and two workers, each pair on
// different nodes. Encodings are registered, then their issued webhooks are
// delivered concurrently through both receivers, retried like Svix until
// answered 2xx. Once a third are answered, the node leading SEAM_EVENTS is
// shut down; the rest of the load runs through the election, and a last
// batch is first sent only after a new leader is elected.
//
// It checks that every webhook answered 2xx is in SEAM_EVENTS exactly once
// and nothing else is; that every encoding has exactly one pending and one
// issued outcome and its record is issued by its own event; and that the
// webhooks sent after the election are accepted. How long settling paused
// after the loss is logged.
func TestClusterScaleOut(t *testing.T) {
	const (
		encodings = 300
		// killAt is how many webhooks are answered 2xx before the leader
		// of SEAM_EVENTS is shut down.
		killAt = encodings / 3
		// afterElection webhooks are held back until a new leader leads
		// SEAM_EVENTS.
		afterElection = encodings / 5
		senders       = 6
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	since := func() time.Duration { return time.Since(began).Round(time.Millisecond) }

	c := natstest.RunCluster(t, 3)
	secret := newSecret()
	eventsOpts := streams.DefaultEventsStreamOptions()
	eventsOpts.Replicas = 3
	owned := streams.DefaultWorkerOptions()
	owned.Replicas = 3
	// Deliveries pulled by a worker whose node goes away come back after
	// AckWait (WORKER_ACK_WAIT); shorter than the default keeps the test
	// short without changing what is checked.
	owned.AckWait = 5 * time.Second
	wc := workerConfig{Owned: owned, HandleTimeout: 2 * time.Second, ConfirmTimeout: 10 * time.Minute}

	// Four clients on three nodes: the receivers on n1 and n2, the workers
	// on n3 and n1.
	receivers := []string{
		startReceiverOn(t, connectNode(t, c, 0, "receiver-1"), secret, eventsOpts).URL,
		startReceiverOn(t, connectNode(t, c, 1, "receiver-2"), secret, eventsOpts).URL,
	}
	apis := []string{
		startWorker(t, connectNode(t, c, 2, "worker-1"), wc).URL,
		startWorker(t, connectNode(t, c, 0, "worker-2"), wc).URL,
	}
	requireReplicas(t, ctx, connectNode(t, c, 1, "setup-check"), 3,
		streams.EventsStream, streams.OutcomesStream, streams.TimersStream, "KV_"+streams.EncodingsBucket)

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * senders}}
	t.Cleanup(client.CloseIdleConnections)

	// Register every encoding, spread over both workers; each is then
	// issued, in an event that occurs after its request.
	creds := make([]string, encodings)
	ids := make([]string, encodings)
	for i := range creds {
		creds[i] = uuid.NewString()
	}
	require.NoError(t, parallel(encodings, senders, func(i int) (err error) {
		ids[i], err = register(ctx, client, apis[i%len(apis)], creds[i])
		return err
	}))
	t.Logf("%s: %d encodings registered", since(), encodings)
	deliveries := make([]delivery, encodings)
	for i, cred := range creds {
		deliveries[i] = newIssued(cred)
	}

	// The load, with the leader of SEAM_EVENTS shut down mid-way.
	l := &load{client: client, receivers: receivers, secret: secret, killAt: killAt, kill: make(chan struct{}), answered: map[string]bool{}}
	during := deliveries[:encodings-afterElection]
	loadDone := make(chan error, 1)
	go func() {
		loadDone <- parallel(len(during), senders, func(i int) error { return l.deliver(ctx, i, during[i]) })
	}()
	select {
	case <-l.kill:
	case err := <-loadDone:
		t.Fatalf("the load ended before %d webhooks were answered: %v", killAt, err)
	}
	leader := c.StreamLeader(streams.EventsStream)
	require.GreaterOrEqual(t, leader, 0, "no leader of %s while under load", streams.EventsStream)
	alsoConsumer := c.ConsumerLeader(streams.EventsStream, streams.WorkerConsumer) == leader
	stopping := time.Now()
	c.Stop(leader)
	stopped := time.Now()
	acceptedAtStop := l.accepted.Load()
	newLeader := c.WaitStreamLeader(t, streams.EventsStream)
	elected := time.Now()
	require.NotEqual(t, leader, newLeader)
	t.Logf("stopped %s (leader of %s; of consumer %s too: %t) after %d webhooks answered 2xx, in %s; %d answered by then; %s leads after %s",
		c.Nodes[leader].Name(), streams.EventsStream, streams.WorkerConsumer, alsoConsumer, killAt,
		stopped.Sub(stopping).Round(time.Millisecond), acceptedAtStop, c.Nodes[newLeader].Name(), elected.Sub(stopping).Round(time.Millisecond))

	// (c) Webhooks first sent after the election are accepted.
	after := deliveries[encodings-afterElection:]
	require.NoError(t, parallel(len(after), senders, func(i int) error {
		return l.deliver(ctx, len(during)+i, after[i])
	}))
	require.NoError(t, <-loadDone)
	for _, d := range after {
		require.True(t, l.answered[d.id], "webhook %s sent after the election not answered 2xx", d.id)
	}
	t.Logf("%s: %d webhooks answered 2xx; %d attempts failed and were retried", since(), len(l.answered), l.failed.Load())

	// Every check reads from a node that stayed up.
	js := connectNode(t, c, newLeader, "checker")

	// (a) Every webhook answered 2xx is stored exactly once, and nothing else.
	stored := map[string]int{}
	for _, m := range readStream(t, ctx, js, streams.EventsStream) {
		id := m.Headers().Get(streams.HeaderWebhookID)
		require.Equal(t, streams.EventMsgIDPrefix+m.Headers().Get(streams.HeaderEventID), m.Headers().Get(jetstream.MsgIDHeader), "message %s", m.Subject())
		require.Equal(t, "seam.events."+ws+".acs_credential.issued", m.Subject(), "webhook %s", id)
		stored[id]++
	}
	for id, n := range stored {
		require.Equal(t, 1, n, "webhook %s stored %d times", id, n)
		require.Contains(t, l.answered, id, "webhook %s stored but never answered 2xx", id)
	}
	require.Len(t, stored, len(l.answered), "webhooks answered 2xx but not stored")
	require.Len(t, l.answered, encodings)

	// (b) Every encoding is issued exactly once, by its own event.
	waitIssued(t, ctx, js, ids)
	issuedAfter := time.Since(stopping)
	t.Logf("%s: every encoding issued, %s after the node was stopped", since(), issuedAfter.Round(time.Millisecond))
	// How long settling paused is a figure, not a pass/fail bound (speed
	// lives in benchmarks): a lost PubAck (the receiver's 5 s publish
	// timeout), a lost ack (AckWait, 5 s here) and a lost pull (the worker's
	// 2 s pull heartbeat, missed twice) each delay it by seconds.
	waitSettled(t, ctx, js)
	t.Logf("%s: consumer %s settled", since(), streams.WorkerConsumer)
	outcomes := map[string]map[encoding.Status]int{}
	for _, m := range readStream(t, ctx, js, streams.OutcomesStream) {
		var rec encoding.Record
		require.NoError(t, json.Unmarshal(m.Data(), &rec))
		if outcomes[rec.EncodingID] == nil {
			outcomes[rec.EncodingID] = map[encoding.Status]int{}
		}
		outcomes[rec.EncodingID][rec.Status]++
	}
	require.Len(t, outcomes, encodings)
	for i, id := range ids {
		require.Equal(t, map[encoding.Status]int{encoding.StatusPending: 1, encoding.StatusIssued: 1}, outcomes[id], "outcomes of encoding %s", id)
		rec := getEncoding(t, ctx, client, apis[i%len(apis)], id)
		require.Equal(t, encoding.StatusIssued, rec.Status, "encoding %s", id)
		require.Equal(t, encoding.ResolvedByWebhook, rec.ResolvedBy, "encoding %s", id)
		require.Equal(t, deliveries[i].eventID, rec.EventID, "encoding %s", id)
	}
}

// connectNode connects a client to node first of c as the binaries do
// (broker.Connect: reconnect for ever, no reconnect buffer) and as they are
// deployed: given one address (nats://nats:4222 in Kubernetes), learning the
// other servers from the cluster, and failing over to them when that node
// goes away.
func connectNode(t testing.TB, c *natstest.Cluster, first int, name string) jetstream.JetStream {
	t.Helper()
	o := broker.DefaultOptions()
	o.URL, o.Name = c.Nodes[first].ClientURL(), name
	o.ReconnectWait = 100 * time.Millisecond
	nc, err := broker.Connect(o, zerolog.Nop(), prometheus.NewRegistry())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, broker.WaitConnected(ctx, nc))
	require.Equal(t, c.Nodes[first].Name(), nc.ConnectedServerName(), "%s connected to the wrong node", name)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// requireReplicas fails unless every stream has the given replica count
// and a full set of peers.
func requireReplicas(t *testing.T, ctx context.Context, js jetstream.JetStream, replicas int, names ...string) {
	t.Helper()
	for _, name := range names {
		st, err := js.Stream(ctx, name)
		require.NoError(t, err)
		info := st.CachedInfo()
		require.Equal(t, replicas, info.Config.Replicas, "stream %s", name)
		require.NotNil(t, info.Cluster, "stream %s", name)
		require.Len(t, info.Cluster.Replicas, replicas-1, "followers of stream %s", name)
	}
}

// parallel calls fn(i) for every i in [0, n) from workers goroutines and
// returns every error.
func parallel(n, workers int, fn func(i int) error) error {
	next := make(chan int)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// load delivers webhooks like Svix: each is retried, with the same id and
// body, until a receiver answers 2xx, alternating between the receivers as
// a load balancer would. It closes kill once killAt webhooks are answered.
type load struct {
	client    *http.Client
	receivers []string
	secret    string
	killAt    int64
	kill      chan struct{}

	accepted atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	answered map[string]bool // webhook ids answered 2xx
}

// maxAttempts bounds one webhook's attempts; the test's context bounds
// their time.
const maxAttempts = 200

// deliver delivers d (the i-th webhook) until it is answered 2xx, or fails
// when the attempts or ctx run out.
func (l *load) deliver(ctx context.Context, i int, d delivery) error {
	backoff := 10 * time.Millisecond
	var last string
	for attempt := range maxAttempts {
		status, err := d.post(ctx, l.client, l.receivers[(i+attempt)%len(l.receivers)], l.secret)
		if err == nil && status >= 200 && status < 300 {
			l.mu.Lock()
			l.answered[d.id] = true
			l.mu.Unlock()
			if l.accepted.Add(1) == l.killAt {
				close(l.kill)
			}
			return nil
		}
		l.failed.Add(1)
		last = fmt.Sprintf("status %d, error %v", status, err)
		retry := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			retry.Stop()
			return fmt.Errorf("webhook %s not answered 2xx after %d attempts (last: %s): %w", d.id, attempt+1, last, ctx.Err())
		case <-retry.C:
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
	return fmt.Errorf("webhook %s not answered 2xx after %d attempts (last: %s)", d.id, maxAttempts, last)
}

// readStream reads every message in stream with an ordered consumer and
// checks that nothing follows the last one. It iterates (Messages) rather
// than fetching: an ordered Fetch creates a new consumer every time, and a
// new consumer on another node may not have its interest known yet (no
// responders), which the iterator recovers from and Fetch does not.
func readStream(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	st, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	total := st.CachedInfo().State.Msgs
	if total == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	it, err := cons.Messages()
	require.NoError(t, err)
	defer it.Stop()
	out := make([]jetstream.Msg, 0, total)
	for uint64(len(out)) < total {
		m, err := it.Next(jetstream.NextContext(ctx))
		require.NoError(t, err, "%s: read %d of %d messages", stream, len(out), total)
		out = append(out, m)
	}
	meta, err := out[len(out)-1].Metadata()
	require.NoError(t, err)
	require.Zero(t, meta.NumPending, "%s has messages after the %d counted", stream, total)
	return out
}

// waitIssued follows the issued outcomes until every encoding in ids has
// one.
func waitIssued(t *testing.T, ctx context.Context, js jetstream.JetStream, ids []string) {
	t.Helper()
	missing := make(map[string]bool, len(ids))
	for _, id := range ids {
		missing[id] = true
	}
	cons, err := js.OrderedConsumer(ctx, streams.OutcomesStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.OutcomesSubjectPrefix + ".*." + string(encoding.StatusIssued)},
	})
	require.NoError(t, err)
	it, err := cons.Messages()
	require.NoError(t, err)
	defer it.Stop()
	for len(missing) > 0 {
		m, err := it.Next(jetstream.NextContext(ctx))
		require.NoError(t, err, "%d encodings not issued", len(missing))
		var rec encoding.Record
		require.NoError(t, json.Unmarshal(m.Data(), &rec))
		delete(missing, rec.EncodingID)
	}
}

// waitSettled waits until the encoding-worker consumer has no event left to
// deliver or acknowledge, so that no outcome is still to come. The server
// has no event for that; its state is polled.
func waitSettled(t *testing.T, ctx context.Context, js jetstream.JetStream) {
	t.Helper()
	cons, err := js.Consumer(ctx, streams.EventsStream, streams.WorkerConsumer)
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		info, err := cons.Info(ctx)
		require.NoError(c, err)
		require.Zero(c, info.NumPending, "pending")
		require.Zero(c, info.NumAckPending, "awaiting an ack")
	}, time.Minute, 50*time.Millisecond, "consumer %s not settled", streams.WorkerConsumer)
}

// getEncoding reads one encoding record through the worker API.
func getEncoding(t *testing.T, ctx context.Context, client *http.Client, apiURL, id string) encoding.Record {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/v1/encodings/"+id, nil)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET encoding %s", id)
	var rec encoding.Record
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&rec))
	return rec
}
