package k8s_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

// What the README promises a subscriber namespace.
const (
	subscriberLabel, subscriberLabelValue = "cardwire.io/subscriber", "true"
	// subscriberJSDomain is the JetStream domain a subscriber names
	// (jetstream.NewWithDomain, nats --js-domain): its API prefix is
	// $JS.cardwire.API.
	subscriberJSDomain = "cardwire"
)

// withComponent returns dir's kustomization.yaml with component added to
// its components, as an operator enables one, for renderComposed.
func withComponent(t *testing.T, dir, component string) map[string]string {
	t.Helper()
	file := dir + "/kustomization.yaml"
	raw, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		t.Fatal(err)
	}
	var k map[string]any
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	components, _ := k["components"].([]any)
	k["components"] = append(components, component)
	out, err := yaml.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{file: string(out)}
}

// renderNATSWithSubscribers is deploy/k8s/nats with
// components/subscriber-access.
func renderNATSWithSubscribers(t *testing.T) *rendered {
	t.Helper()
	return renderComposed(t, withComponent(t, "nats", "../components/subscriber-access"), "nats")
}

// renderCardwireWithUser is the production overlay with components/nats-user.
func renderCardwireWithUser(t *testing.T) *rendered {
	t.Helper()
	return renderComposed(t, withComponent(t, "overlays/production", "../../components/nats-user"), "overlays/production")
}

// TestSubscriberNetworkPolicy: components/subscriber-access admits pods of
// labelled namespaces to the NATS client port, and to nothing else, and
// leaves every other object of deploy/k8s/nats as it was but for the
// servers' configuration file and passwords.
func TestSubscriberNetworkPolicy(t *testing.T) {
	base := render(t, "nats")
	r := renderNATSWithSubscribers(t)
	sts := r.StatefulSets["nats"]
	c := sts.Spec.Template.Spec.Containers[0]
	opts := natsConfig(t, r, sts.Name+"-0")
	clientPort := containerPort(c, intstr.FromString("client"))
	if clientPort == 0 || int(clientPort) != opts.Port {
		t.Fatalf("container port client %d, nats-server listens for clients on %d", clientPort, opts.Port)
	}

	admitted := false
	for _, p := range r.NetworkPolicies {
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		if err != nil {
			t.Fatalf("NetworkPolicy %s: %v", p.Name, err)
		}
		if !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
			continue
		}
		if !slices.Equal(p.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) {
			t.Errorf("NetworkPolicy %s limits %v; a NATS policy limits Ingress only (Egress would cut the routes)", p.Name, p.Spec.PolicyTypes)
		}
		for _, rule := range p.Spec.Ingress {
			for _, peer := range rule.From {
				ns := peer.NamespaceSelector
				if ns == nil || ns.MatchLabels[subscriberLabel] == "" {
					if _, was := base.NetworkPolicies[p.Name]; !was {
						t.Errorf("NetworkPolicy %s (the component's) admits %s", p.Name, describePeer(peer))
					}
					continue
				}
				if !reflect.DeepEqual(ns.MatchLabels, map[string]string{subscriberLabel: subscriberLabelValue}) || len(ns.MatchExpressions) > 0 ||
					peer.PodSelector != nil || peer.IPBlock != nil {
					t.Errorf("NetworkPolicy %s admits %s; want the namespaces labelled %s=%s, any pod in them", p.Name, describePeer(peer), subscriberLabel, subscriberLabelValue)
				}
				if len(rule.Ports) != 1 || rule.Ports[0].Port == nil || rule.Ports[0].Port.IntVal != clientPort ||
					rule.Ports[0].Protocol == nil || *rule.Ports[0].Protocol != corev1.ProtocolTCP {
					t.Errorf("NetworkPolicy %s opens %+v to subscriber namespaces; want TCP %d (clients) only, not the routes or monitoring", p.Name, rule.Ports, clientPort)
				}
				admitted = true
			}
		}
	}
	if !admitted {
		t.Fatalf("no NetworkPolicy admits namespaces labelled %s=%s to the NATS pods", subscriberLabel, subscriberLabelValue)
	}

	// Everything else as it was. The ConfigMap's name carries a hash of its
	// content, so it is compared through the StatefulSet that mounts it.
	configMap := func(r *rendered) (*corev1.ConfigMap, string) {
		for _, v := range r.StatefulSets["nats"].Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil {
				return r.ConfigMaps[v.ConfigMap.Name], v.ConfigMap.Name
			}
		}
		t.Fatal("the StatefulSet mounts no ConfigMap")
		return nil, ""
	}
	baseCM, baseName := configMap(base)
	cm, name := configMap(r)
	for key, data := range baseCM.Data {
		if cm.Data[key] != data {
			t.Errorf("ConfigMap key %s changed; the component adds a file beside it", key)
		}
	}
	confFile := strings.TrimPrefix(c.Command[2], mountPathOf(t, c, "config")+"/")
	if _, ok := baseCM.Data[confFile]; ok || len(cm.Data) != len(baseCM.Data)+1 || cm.Data[confFile] == "" {
		t.Errorf("ConfigMap keys %v: want those of deploy/k8s/nats and %s, which the servers start with", slices.Sorted(maps.Keys(cm.Data)), confFile)
	}

	was, is := objects(base), objects(r)
	delete(was, "ConfigMaps/"+baseName)
	delete(is, "ConfigMaps/"+name)
	delete(is, "NetworkPolicies/nats-subscribers")
	// The StatefulSet differs in its command, its environment and the
	// ConfigMap's name, nothing else.
	want := was["StatefulSets/nats"].(*appsv1.StatefulSet).DeepCopy()
	got := is["StatefulSets/nats"].(*appsv1.StatefulSet).DeepCopy()
	gc := &got.Spec.Template.Spec.Containers[0]
	wc := want.Spec.Template.Spec.Containers[0]
	if len(gc.Env) < len(wc.Env) || !equality.Semantic.DeepEqual(gc.Env[:len(wc.Env)], wc.Env) {
		t.Fatalf("the NATS container's environment lost or changed a variable: %v, was %v", gc.Env, wc.Env)
	}
	for _, e := range gc.Env[len(wc.Env):] {
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("the component adds %s to NATS that is not a Secret's key", e.Name)
		}
	}
	gc.Command, gc.Env = wc.Command, wc.Env
	for i, v := range got.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			got.Spec.Template.Spec.Volumes[i].ConfigMap.Name = baseName
		}
	}
	is["StatefulSets/nats"] = got
	was["StatefulSets/nats"] = want
	for key, obj := range was {
		if !equality.Semantic.DeepEqual(obj, is[key]) {
			t.Errorf("%s changed (the component adds a NetworkPolicy and the configuration for authorization only)", key)
		}
	}
	for key := range is {
		if _, ok := was[key]; !ok {
			t.Errorf("the component adds %s", key)
		}
	}
}

// objects are a build's objects by field of rendered and name
// ("StatefulSets/nats").
func objects(r *rendered) map[string]any {
	out := map[string]any{}
	v := reflect.ValueOf(*r)
	for i := range v.NumField() {
		m := v.Field(i)
		kind := v.Type().Field(i).Name
		for _, k := range m.MapKeys() {
			out[kind+"/"+k.String()] = m.MapIndex(k).Interface()
		}
	}
	return out
}

// TestSubscriberPermissions runs a real nats-server with the configuration
// that components/subscriber-access gives the NATS pods (alone, on
// loopback), lets cardwire log in as the production overlay with
// components/nats-user does and create its streams as the binaries do, and
// holds the subscriber user to the README: it creates its own durable
// consumers on ENCODING_EVENTS and on seam.events.> of SEAM_EVENTS, reads
// and acks through them, and cannot publish, change a stream, touch the
// worker's consumer, or make the server write into cardwire's streams for
// it.
func TestSubscriberPermissions(t *testing.T) {
	natsBuild := renderNATSWithSubscribers(t)
	opts := natsConfig(t, natsBuild, "nats-0")
	var subscriberPassword string
	for _, u := range opts.Users {
		if u.Username == "subscriber" {
			subscriberPassword = u.Password
		}
	}
	if subscriberPassword == "" {
		t.Fatal("nats-accounts.conf has no user subscriber with a password")
	}
	// One server: the pods' cluster, ports, store and pid file are theirs.
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
	opts.Cluster, opts.Routes, opts.RoutesStr = server.ClusterOpts{}, nil, ""
	opts.StoreDir, opts.PidFile = t.TempDir(), ""
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready within 10s")
	}
	addr := srv.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// cardwire, with the URL its pods get, pointed at this server.
	cardwireURL := cardwireNATSURL(t, natsBuild)
	local := *cardwireURL
	local.Host = addr
	cnc, err := nats.Connect(local.String())
	if err != nil {
		t.Fatalf("cardwire cannot log in with its pods' NATS_URL: %v", err)
	}
	t.Cleanup(cnc.Close)
	cjs, err := jetstream.New(cnc)
	if err != nil {
		t.Fatal(err)
	}
	if err := streams.EnsureEventsStream(ctx, cjs, streams.DefaultEventsStreamOptions()); err != nil {
		t.Fatalf("cardwire (receiver): %v", err)
	}
	if _, err := streams.EnsureWorker(ctx, cjs, streams.DefaultWorkerOptions()); err != nil {
		t.Fatalf("cardwire (worker): %v", err)
	}
	// An event, as the receiver stores it, and two outcomes of one
	// encoding, as the worker's outbox publishes them.
	event, err := streams.EventMsg([]byte(`{"event_id":"evt1","event_type":"acs_credential.issued","workspace_id":"ws1"}`),
		streams.Event{EventID: "evt1", EventType: "acs_credential.issued", WorkspaceID: "ws1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cjs.PublishMsg(ctx, event); err != nil {
		t.Fatalf("cardwire stores an event: %v", err)
	}
	var outcomeSubjects []string
	for rev, status := range []string{"pending", "issued"} {
		subject, err := streams.OutcomeSubject("ws1", status)
		if err != nil {
			t.Fatal(err)
		}
		outcomeSubjects = append(outcomeSubjects, subject)
		msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: fmt.Appendf(nil, `{"encoding_id":"enc1","status":%q,"revision":%d}`, status, rev+1)}
		msg.Header.Set(jetstream.MsgIDHeader, "enc1:"+strconv.Itoa(rev+1))
		msg.Header.Set(jetstream.ExpectedStreamHeader, streams.OutcomesStream)
		if _, err := cjs.PublishMsg(ctx, msg); err != nil {
			t.Fatalf("cardwire publishes an outcome: %v", err)
		}
	}
	stored := func() (outcomes, events uint64) {
		t.Helper()
		for _, s := range []struct {
			name string
			n    *uint64
		}{{streams.OutcomesStream, &outcomes}, {streams.EventsStream, &events}} {
			st, err := cjs.Stream(ctx, s.name)
			if err != nil {
				t.Fatalf("cardwire: stream %s: %v", s.name, err)
			}
			*s.n = st.CachedInfo().State.Msgs
		}
		return outcomes, events
	}

	// The subscriber, with the URL the README gives it.
	var mu sync.Mutex
	var asyncErrs []error
	subscriberURL := url.URL{Scheme: "nats", User: url.UserPassword("subscriber", subscriberPassword), Host: addr}
	snc, err := nats.Connect(subscriberURL.String(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		mu.Lock()
		asyncErrs = append(asyncErrs, err)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatalf("subscriber cannot log in: %v", err)
	}
	t.Cleanup(snc.Close)
	sjs, err := jetstream.NewWithDomain(snc, subscriberJSDomain)
	if err != nil {
		t.Fatal(err)
	}
	// violation waits for the server's permissions violation naming what
	// the subscriber tried (publish to, or subscription to, subject).
	violation := func(t *testing.T, what, subject string) {
		t.Helper()
		want := fmt.Sprintf("%s %q", what, subject)
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			found := slices.ContainsFunc(asyncErrs, func(err error) bool {
				return errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), want)
			})
			mu.Unlock()
			if found {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("no permissions violation for %s (got %v)", want, asyncErrs)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	const pubTo, subTo = "Publish to", "Subscription to"
	api := "$JS." + subscriberJSDomain + ".API."
	// refused: a request the server drops answers nothing; wait briefly.
	refused := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}

	t.Run("logs in with its password only", func(t *testing.T) {
		for _, u := range []string{"nats://" + addr, "nats://subscriber:wrong@" + addr, "nats://cardwire:" + subscriberPassword + "@" + addr} {
			if nc, err := nats.Connect(u, nats.NoReconnect()); err == nil {
				nc.Close()
				t.Errorf("%s was let in", strings.Replace(u, subscriberPassword, "…", 1))
			}
		}
	})

	t.Run("reads and acks outcomes through its own durable consumer", func(t *testing.T) {
		if _, err := sjs.Stream(ctx, streams.OutcomesStream); err != nil {
			t.Errorf("stream info: %v", err)
		}
		cons, err := sjs.CreateOrUpdateConsumer(ctx, streams.OutcomesStream, jetstream.ConsumerConfig{
			Durable: "billing", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: streams.OutcomesSubjectPrefix + ".>",
		})
		if err != nil {
			t.Fatalf("create durable consumer: %v", err)
		}
		batch, err := cons.Fetch(len(outcomeSubjects), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range batch.Messages() {
			got = append(got, m.Subject())
			if err := m.DoubleAck(ctx); err != nil {
				t.Errorf("ack %s: %v", m.Subject(), err)
			}
		}
		if err := batch.Error(); err != nil {
			t.Errorf("fetch: %v", err)
		}
		if !slices.Equal(got, outcomeSubjects) {
			t.Fatalf("received %q, want %q", got, outcomeSubjects)
		}
		again, err := sjs.Consumer(ctx, streams.OutcomesStream, "billing")
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		info := again.CachedInfo()
		if info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != uint64(len(outcomeSubjects)) {
			t.Errorf("after the acks: %d unacked, %d pending, ack floor %d", info.NumAckPending, info.NumPending, info.AckFloor.Stream)
		}
	})

	t.Run("reads seam.events.> and no other part of SEAM_EVENTS", func(t *testing.T) {
		cons, err := sjs.CreateOrUpdateConsumer(ctx, streams.EventsStream, jetstream.ConsumerConfig{
			Durable: "audit", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: streams.EventsSubjectPrefix + ".>",
		})
		if err != nil {
			t.Fatalf("create durable consumer: %v", err)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject() != event.Subject || m.Headers().Get(streams.HeaderEventID) != "evt1" {
			t.Errorf("received %s %v, want the stored event", m.Subject(), m.Headers())
		}
		if err := m.DoubleAck(ctx); err != nil {
			t.Errorf("ack: %v", err)
		}
		for _, cfg := range []jetstream.ConsumerConfig{
			{Durable: "everything"},
			{Durable: "quarantine", FilterSubject: streams.QuarantineSubject},
			{Durable: "deadletters", FilterSubject: streams.DeadLetterSubjectPrefix + ".>"},
		} {
			if _, err := sjs.CreateOrUpdateConsumer(refused(), streams.EventsStream, cfg); err == nil {
				t.Errorf("created %s (filter %q) on %s", cfg.Durable, cfg.FilterSubject, streams.EventsStream)
			}
			subject := api + "CONSUMER.CREATE." + streams.EventsStream + "." + cfg.Durable
			if cfg.FilterSubject != "" {
				subject += "." + cfg.FilterSubject
			}
			violation(t, pubTo, subject)
		}
	})

	t.Run("cannot touch the worker's consumer", func(t *testing.T) {
		const worker = streams.WorkerConsumer
		if _, err := sjs.CreateOrUpdateConsumer(refused(), streams.EventsStream, jetstream.ConsumerConfig{
			Durable: worker, FilterSubject: streams.EventsSubjectPrefix + ".>",
		}); err == nil {
			t.Error("changed the worker's consumer")
		}
		violation(t, pubTo, api+"CONSUMER.CREATE."+streams.EventsStream+"."+worker+"."+streams.EventsSubjectPrefix+".>")
		if _, err := sjs.Consumer(refused(), streams.EventsStream, worker); err == nil {
			t.Error("read the worker's consumer")
		}
		violation(t, pubTo, api+"CONSUMER.INFO."+streams.EventsStream+"."+worker)
		for _, subject := range []string{
			api + "CONSUMER.MSG.NEXT." + streams.EventsStream + "." + worker,
			"$JS.ACK." + streams.EventsStream + "." + worker + ".1.1.1.1.0",
		} {
			if err := snc.PublishRequest(subject, snc.NewRespInbox(), []byte(`{"batch":1}`)); err != nil {
				t.Fatal(err)
			}
			violation(t, pubTo, subject)
		}
		cons, err := cjs.Consumer(ctx, streams.EventsStream, worker)
		if err != nil {
			t.Fatal(err)
		}
		info := cons.CachedInfo()
		if !slices.Equal(info.Config.FilterSubjects, streams.WorkerFilterSubjects()) || info.Delivered.Consumer != 0 || info.NumPending != 1 {
			t.Errorf("the worker's consumer: filters %q, %d delivered, %d pending; want its own filters and the event still waiting for it",
				info.Config.FilterSubjects, info.Delivered.Consumer, info.NumPending)
		}
	})

	t.Run("cannot publish", func(t *testing.T) {
		for _, subject := range []string{"encodings.ws1.issued", "seam.events.ws1.acs_credential.issued", streams.QuarantineSubject} {
			if err := snc.Publish(subject, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			violation(t, pubTo, subject)
			if _, err := sjs.Publish(refused(), subject, []byte(`{}`)); err == nil {
				t.Errorf("JetStream publish to %s succeeded", subject)
			}
		}
	})

	t.Run("cannot change streams or delete consumers", func(t *testing.T) {
		if err := sjs.DeleteStream(refused(), streams.OutcomesStream); err == nil {
			t.Error("deleted ENCODING_EVENTS")
		}
		violation(t, pubTo, api+"STREAM.DELETE."+streams.OutcomesStream)
		// Without the domain: the account's own JetStream API, which it has
		// none of.
		plain, err := jetstream.New(snc)
		if err != nil {
			t.Fatal(err)
		}
		if err := plain.DeleteStream(refused(), streams.OutcomesStream); err == nil {
			t.Error("deleted ENCODING_EVENTS through $JS.API")
		}
		violation(t, pubTo, "$JS.API.STREAM.DELETE."+streams.OutcomesStream)
		st, err := sjs.Stream(ctx, streams.EventsStream)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Purge(refused()); err == nil {
			t.Error("purged SEAM_EVENTS")
		}
		violation(t, pubTo, api+"STREAM.PURGE."+streams.EventsStream)
		if _, err := sjs.UpdateStream(refused(), jetstream.StreamConfig{Name: streams.OutcomesStream, Subjects: []string{">"}}); err == nil {
			t.Error("updated ENCODING_EVENTS")
		}
		violation(t, pubTo, api+"STREAM.UPDATE."+streams.OutcomesStream)
		if err := sjs.DeleteConsumer(refused(), streams.OutcomesStream, "billing"); err == nil {
			t.Error("deleted a consumer")
		}
		violation(t, pubTo, api+"CONSUMER.DELETE."+streams.OutcomesStream+".billing")
	})

	t.Run("replies and deliveries stay out of cardwire's streams", func(t *testing.T) {
		// A reply subject is not a permission: the answer to an allowed
		// request, and the messages a consumer hands out, go where the
		// requester says; in cardwire's account its streams would store
		// them. From SUBSCRIBERS they come back through the import. The
		// bait has no headers (no Nats-Expected-Stream for another stream
		// to refuse a copy by, no message id to dedupe one), so any copy
		// of it in a stream would be counted.
		if _, err := cjs.Publish(ctx, "encodings.ws1.bait", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		outcomesBefore, eventsBefore := stored()
		if err := snc.PublishRequest(api+"STREAM.INFO."+streams.OutcomesStream, "encodings.ws1.issued", nil); err != nil {
			t.Fatal(err)
		}
		replay, err := sjs.CreateOrUpdateConsumer(ctx, streams.OutcomesStream, jetstream.ConsumerConfig{
			Durable: "replay", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "encodings.ws1.bait",
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := snc.PublishRequest(api+"CONSUMER.MSG.NEXT."+streams.OutcomesStream+"."+replay.CachedInfo().Name, "encodings.ws1.copy", []byte(`{"batch":1}`)); err != nil {
			t.Fatal(err)
		}
		// A push consumer delivers where its config says (the server does
		// not hold that to the creator's permissions) once something
		// subscribes to exactly that subject: the subscriber cannot.
		if _, err := sjs.CreateOrUpdatePushConsumer(ctx, streams.OutcomesStream, jetstream.ConsumerConfig{
			Durable: "push", FilterSubject: "encodings.ws1.bait", DeliverSubject: "seam.events.ws1.copy",
		}); err != nil {
			t.Logf("push consumer refused: %v", err)
		}
		if _, err := snc.SubscribeSync("seam.events.ws1.copy"); err != nil {
			t.Fatal(err)
		}
		violation(t, subTo, "seam.events.ws1.copy")
		if err := snc.Flush(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if outcomes, events := stored(); outcomes != outcomesBefore || events != eventsBefore {
			t.Errorf("cardwire's streams went from %d outcomes and %d events to %d and %d", outcomesBefore, eventsBefore, outcomes, events)
		}
	})

	t.Run("cardwire keeps every right", func(t *testing.T) {
		for _, c := range []struct{ stream, name string }{
			{streams.OutcomesStream, "billing"}, {streams.EventsStream, "audit"},
			{streams.OutcomesStream, "replay"}, {streams.OutcomesStream, "push"},
		} {
			if err := cjs.DeleteConsumer(ctx, c.stream, c.name); err != nil && !(c.name == "push" && errors.Is(err, jetstream.ErrConsumerNotFound)) {
				t.Errorf("delete the subscriber's consumer %s: %v", c.name, err)
			}
		}
		if err := cnc.Publish("encodings.ws1.issued", nil); err != nil {
			t.Fatal(err)
		}
		if err := cnc.Flush(); err != nil || cnc.LastError() != nil {
			t.Errorf("cardwire publishes: %v %v", err, cnc.LastError())
		}
	})

	t.Run("the password is ignored by a NATS without accounts", func(t *testing.T) {
		// So components/nats-user can go first.
		plain := natstest.RunJetStream(t)
		u := *cardwireURL
		u.Host = plain.Addr().String()
		nc, err := nats.Connect(u.String())
		if err != nil {
			t.Fatalf("cardwire's URL with its password, against deploy/k8s/nats without the component: %v", err)
		}
		nc.Close()
	})
}

// cardwireNATSURL is the NATS_URL of both binaries in the production
// overlay with components/nats-user, its $(…) references expanded as the
// kubelet does (from variables defined above it, here Secret keys, given
// secretValue). It checks that both use the same one, that it names the
// user cardwire and reaches the client port of natsBuild's Service.
func cardwireNATSURL(t *testing.T, natsBuild *rendered) *url.URL {
	t.Helper()
	r := renderCardwireWithUser(t)
	ref := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var urls []string
	for _, b := range binaries {
		c := r.Deployments[b.Deployment].Spec.Template.Spec.Containers[0]
		defined := map[string]string{}
		raw := ""
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				defined[e.Name] = secretValue(e.ValueFrom.SecretKeyRef)
			case e.ValueFrom == nil:
				defined[e.Name] = ref.ReplaceAllStringFunc(e.Value, func(m string) string {
					v, ok := defined[ref.FindStringSubmatch(m)[1]]
					if !ok {
						t.Errorf("%s: %s refers to %s, which is not defined above it", b.Deployment, e.Name, m)
					}
					return v
				})
				if e.Name == "NATS_URL" {
					raw = e.Value
				}
			}
		}
		if raw == "" || containerEnv(t, r, c)["NATS_URL"] != raw {
			t.Fatalf("%s: NATS_URL is not set in env (where it overrides the ConfigMap's)", b.Deployment)
		}
		urls = append(urls, defined["NATS_URL"])
	}
	if urls[0] != urls[1] {
		t.Fatal("the receiver and the worker log in to NATS differently")
	}
	u, err := url.Parse(urls[0])
	if err != nil || u.Scheme != "nats" || u.User.Username() != "cardwire" {
		t.Fatalf("NATS_URL %q: want nats://cardwire:<password>@…: %v", urls[0], err)
	}
	port, _ := strconv.Atoi(u.Port())
	if servicePort(t, natsBuild, u.Hostname(), intstr.FromInt32(int32(port))) == 0 {
		t.Fatalf("NATS_URL reaches no NATS client port at %s", u.Host)
	}
	return u
}
