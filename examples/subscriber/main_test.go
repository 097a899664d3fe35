package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
	"github.com/cardwire/cardwire/internal/worker"
)

const (
	ws1 = "ws-hotel-1"
	ws2 = "ws-hotel-2"
)

// output is a stdout the test can read while run writes it.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) lines() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Split(strings.TrimSuffix(o.buf.String(), "\n"), "\n")
}

// server is an embedded JetStream server with ENCODING_EVENTS as the
// worker creates it.
func server(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	_, err := streams.EnsureWorker(t.Context(), js, streams.DefaultWorkerOptions())
	require.NoError(t, err)
	return srv.ClientURL(), js
}

// rec is one revision of an encoding record.
func rec(id, ws string, rev uint64, status encoding.Status, card string) encoding.Record {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	r := encoding.Record{EncodingID: id, WorkspaceID: ws, AcsEncoderID: "enc-1", AcsCredentialID: "cred-" + id,
		ActionAttemptID: "aa-" + id, Status: status, Revision: rev, RequestedAt: at, Deadline: at.Add(time.Minute)}
	if status.Terminal() {
		done := at.Add(5 * time.Second)
		r.ResolvedAt, r.ResolvedBy, r.EventID = &done, encoding.ResolvedByWebhook, "evt-"+id
		r.IssueKind, r.CardNumber = "issued", card
	}
	return r
}

// publish publishes r as the worker's outbox does: its subject, body and
// message id. withID false publishes it as a copy stored past the stream's
// duplicate window would be: the stream no longer drops it.
func publish(t *testing.T, js jetstream.JetStream, r encoding.Record, withID bool) *jetstream.PubAck {
	t.Helper()
	subj, err := streams.OutcomeSubject(r.WorkspaceID, string(r.Status))
	require.NoError(t, err)
	body, err := json.Marshal(r)
	require.NoError(t, err)
	msg := &nats.Msg{Subject: subj, Data: body, Header: nats.Header{}}
	if withID {
		msg.Header.Set(jetstream.MsgIDHeader, worker.OutcomeMsgID(r))
	}
	ack, err := js.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
	return ack
}

// start runs the subscriber until the returned stop is called, which
// waits for run to return and requires it returned nil.
func start(t *testing.T, url string, args ...string) (*output, func()) {
	t.Helper()
	out := &output{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	getenv := func(k string) string {
		if k == "NATS_URL" {
			return url
		}
		return ""
	}
	go func() { done <- run(ctx, args, getenv, out) }()
	return out, func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Fatal("run did not return")
		}
	}
}

// waitLines waits until out has n lines and returns them.
func waitLines(t *testing.T, out *output, n int) []string {
	t.Helper()
	require.Eventually(t, func() bool { return len(out.lines()) >= n }, 10*time.Second, 10*time.Millisecond,
		"want %d lines, have %q", n, out.lines())
	time.Sleep(100 * time.Millisecond) // nothing more should come
	return out.lines()
}

func TestOrdersByRevisionAndDedupes(t *testing.T) {
	url, js := server(t)
	// Out of order and duplicated, as a redelivery or a copy stored past
	// the duplicate window would bring them; one encoding in another
	// workspace; one message that is not an outcome.
	publish(t, js, rec("a", ws1, 1, encoding.StatusPending, ""), true)
	publish(t, js, rec("a", ws1, 3, encoding.StatusIssued, "4711"), true)
	publish(t, js, rec("a", ws1, 2, encoding.StatusPending, ""), true)
	require.True(t, publish(t, js, rec("a", ws1, 3, encoding.StatusIssued, "4711"), true).Duplicate,
		"inside its duplicate window the stream itself drops a republished revision")
	publish(t, js, rec("a", ws1, 3, encoding.StatusIssued, "4711"), false)
	publish(t, js, rec("b", ws2, 1, encoding.StatusPending, ""), true)
	_, err := js.Publish(t.Context(), "encodings."+ws1+".issued", []byte("not json"))
	require.NoError(t, err)
	// issued twice: the second revision adds the card number.
	publish(t, js, rec("c", ws1, 1, encoding.StatusPending, ""), true)
	publish(t, js, rec("c", ws1, 2, encoding.StatusIssued, ""), true)
	publish(t, js, rec("c", ws1, 3, encoding.StatusIssued, "4712"), true)

	out, stop := start(t, url, "-durable", "pms", "-workspace", ws1)
	want := []string{
		"subscribed stream=ENCODING_EVENTS durable=pms filter=encodings." + ws1 + ".>",
		"applied encoding=a revision=1 status=pending",
		"applied encoding=a revision=3 status=issued card_number=4711",
		"skipped encoding=a revision=2: older than revision 3",
		"skipped encoding=a revision=3: already applied",
		"rejected subject=encodings." + ws1 + ".issued: not an outcome message",
		"applied encoding=c revision=1 status=pending",
		"applied encoding=c revision=2 status=issued",
		"applied encoding=c revision=3 status=issued card_number=4712",
	}
	require.Equal(t, want, waitLines(t, out, len(want)))
	stop()

	// The durable resumes after the last acked message: a new run prints
	// only what came since.
	publish(t, js, rec("d", ws1, 1, encoding.StatusPending, ""), true)
	failed := rec("d", ws1, 2, encoding.StatusFailed, "")
	failed.IssueKind, failed.Error = "", &encoding.RecordError{Type: "no_credential_on_encoder", Message: "no card"}
	publish(t, js, failed, true)
	out, stop = start(t, url, "-durable", "pms", "-workspace", ws1)
	want = []string{
		"subscribed stream=ENCODING_EVENTS durable=pms filter=encodings." + ws1 + ".>",
		"applied encoding=d revision=1 status=pending",
		"applied encoding=d revision=2 status=failed error=no_credential_on_encoder",
	}
	require.Equal(t, want, waitLines(t, out, len(want)))
	stop()

	// Every workspace, bound to a durable an operator created.
	_, err = js.CreateOrUpdateConsumer(t.Context(), streams.OutcomesStream, jetstream.ConsumerConfig{
		Durable: "ops-made", FilterSubject: streams.OutcomesSubjectPrefix + ".>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	require.NoError(t, err)
	out, stop = start(t, url, "-durable", "ops-made", "-bind")
	lines := waitLines(t, out, 12)
	require.Contains(t, lines, "applied encoding=b revision=1 status=pending")
	require.Len(t, lines, 12, "%q", lines)
	stop()
}

func TestRunRefuses(t *testing.T) {
	url, _ := server(t)
	getenv := func(k string) string {
		if k == "NATS_URL" {
			return url
		}
		return ""
	}
	testCases := []struct {
		Name string
		Args []string
		Want string
	}{
		{"a workspace that is no subject token", []string{"-workspace", "ws.1"}, "SUBSCRIBER_WORKSPACE_ID"},
		{"bind to a durable nobody created", []string{"-durable", "nobody", "-bind"}, "bind consumer nobody"},
		{"an unknown flag", []string{"-nope"}, "flag provided but not defined"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			err := run(t.Context(), c.Args, getenv, &output{})
			require.ErrorContains(t, err, c.Want)
		})
	}
	out := &output{}
	require.NoError(t, run(t.Context(), []string{"-h"}, getenv, out))
	require.Contains(t, strings.Join(out.lines(), "\n"), "SUBSCRIBER_DURABLE")
}

// The names the example hard-codes are cardwire's.
func TestNamesAreCardwires(t *testing.T) {
	require.Equal(t, streams.OutcomesStream, outcomesStream)
	require.Equal(t, streams.OutcomesSubjectPrefix, outcomesPrefix)
	require.True(t, token.MatchString(ws1))
	require.False(t, token.MatchString("ws.1"))
}
