package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/seamsim"
	"github.com/cardwire/cardwire/internal/streams"
)

// outageCmd shows the catch-up closing a webhook outage on the local
// stack: with the receiver stopped it starts an encode, lets Seam (the
// simulator) resolve it and its webhook fail until the retries run out,
// starts the receiver again, and waits for the worker to settle the
// encoding from the event the catch-up found in Seam's /events/list.
//
// The receiver is stopped and started through a file that scripts/run.sh
// watches (-down-file: while it exists the receiver is down); it is removed
// whatever happens, so the stack is left as it was.
func outageCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs, p, d, err := newDemoFlags("demo-outage", "the workspace (an id or a name; default: the file's first with Seam credentials)", getenv, stdout)
	if err != nil {
		return err
	}
	o := outage{out: stdout}
	fs.StringVar(&o.metrics, "metrics", p.http("WORKER_ADMIN_PORT", "/metrics"), "the worker's metrics (WORKER_ADMIN_PORT, PORT_BASE)")
	fs.StringVar(&o.downFile, "down-file", ".data/receiver.down", "while this file exists, make run keeps the receiver stopped")
	fs.StringVar(&o.receiverAdmin, "receiver-admin", p.http("RECEIVER_ADMIN_PORT", ""), "the receiver's admin base URL (/healthz, /readyz; RECEIVER_ADMIN_PORT, PORT_BASE)")
	natsURL := fs.String("nats", p.natsURL(), "NATS URL, to show how the event was stored (NATS_PORT, PORT_BASE; NATS_URL wins when set)")
	fs.DurationVar(&o.retries, "retries", retriesRunOut(), "how long the simulator retries a failed webhook; the receiver stays down until then")
	fs.DurationVar(&o.wait, "wait", 30*time.Second, "how long to wait for the receiver to stop or start, and for the outcome (the catch-up runs every CATCHUP_INTERVAL: make run sets 10s)")
	fs.StringVar(&o.confirm, "confirm-timeout", "2m", "the encoding's first deadline: longer than -wait, so that the deadline's reconcile cannot settle it first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if u := getenv("NATS_URL"); u != "" {
		*natsURL = u
	}
	o.api, o.sim = d.api, d.sim
	targets, err := demoTargets(getenv, d.workspace, d.simKey, io.Discard)
	if err != nil {
		return err
	}
	o.target = targets[0]
	if tok := getenv("WORKER_API_TOKEN"); tok != "" {
		o.bearer = "Bearer " + tok
	}
	nc, err := nats.Connect(*natsURL, nats.Name("cardwire-dev-demo-outage"))
	if err != nil {
		return fmt.Errorf("connect %s: %w (is make run up?)", *natsURL, err)
	}
	defer nc.Close()
	if o.js, err = jetstream.New(nc); err != nil {
		return err
	}
	return o.run(ctx)
}

// retriesRunOut is how long after a failed first delivery the simulator
// (cmd/seam-sim, with its default schedule) makes its last attempt, and a
// little more.
func retriesRunOut() time.Duration {
	d := 500 * time.Millisecond
	for _, r := range seamsim.DefaultRetryDelays() {
		d += r
	}
	return d
}

// outage is one run of the demo.
type outage struct {
	out                       io.Writer
	api, bearer, metrics, sim string
	target                    target
	downFile, receiverAdmin   string
	retries, wait             time.Duration
	confirm                   string
	js                        jetstream.JetStream
	receiverDown              bool
}

func (o *outage) run(ctx context.Context) (err error) {
	label := ""
	if o.target.label != "" {
		label = " in " + o.target.label
	}
	before, err := o.missed(ctx)
	if err != nil {
		return fmt.Errorf("worker metrics: %w (is make run up?)", err)
	}

	fmt.Fprintln(o.out, "── 1. the receiver goes down: Seam's webhooks to it fail")
	defer func() {
		if o.receiverDown {
			// Interrupted or failed while it was down: bring it back.
			err = errors.Join(err, os.Remove(o.downFile))
			fmt.Fprintln(o.out, "receiver restarted (the demo did not finish)")
		}
	}()
	if err := o.setReceiver(ctx, false); err != nil {
		return err
	}
	fmt.Fprintf(o.out, "receiver stopped (%s exists; %s/healthz no longer answers)\n", o.downFile, o.receiverAdmin)

	fmt.Fprintf(o.out, "\n── 2. an encoding%s while it is down\n", label)
	start := time.Now()
	body := map[string]string{"acs_encoder_id": uuid.NewString(), "acs_credential_id": uuid.NewString(), "confirm_timeout": o.confirm}
	if o.target.workspaceID != "" {
		body["workspace_id"] = o.target.workspaceID
	}
	var rec struct {
		EncodingID      string `json:"encoding_id"`
		Status          string `json:"status"`
		ActionAttemptID string `json:"action_attempt_id"`
		Deadline        string `json:"deadline"`
	}
	if err := post(ctx, o.api+"/v1/encodings", o.bearer, body, &rec); err != nil {
		return fmt.Errorf("start: %w (is make run up?)", err)
	}
	fmt.Fprintf(o.out, "started   %s: status=%s action_attempt_id=%s deadline=%s\n", rec.EncodingID, rec.Status, rec.ActionAttemptID, rec.Deadline)
	attempt, err := o.resolved(ctx, rec.ActionAttemptID)
	if err != nil {
		return err
	}
	ev, err := o.event(ctx, start, body["acs_credential_id"])
	if err != nil {
		return err
	}
	fmt.Fprintf(o.out, "Seam resolved it after %s (%s) and logged event %s (%s); its webhook fails\n",
		time.Since(start).Round(time.Millisecond), attempt, ev.EventID, ev.EventType)
	fmt.Fprintf(o.out, "keeping the receiver down for %s, until the simulator's retries run out (Svix's take about 27 h)\n", o.retries)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.retries):
	}

	fmt.Fprintln(o.out, "\n── 3. the receiver is back, but no webhook is coming: the catch-up (every CATCHUP_INTERVAL) finds the event in Seam's log")
	if err := o.setReceiver(ctx, true); err != nil {
		return err
	}
	back := time.Now()
	fmt.Fprintf(o.out, "receiver started (%s/readyz answers)\n", o.receiverAdmin)
	final, raw, err := o.outcome(ctx, rec.EncodingID)
	if err != nil {
		return err
	}
	if final.Status == "pending" {
		return fmt.Errorf("encoding %s still pending after %s: is the catch-up on (CATCHUP_ENABLED) with a short CATCHUP_INTERVAL (make run sets 10s)?", rec.EncodingID, o.wait)
	}
	when := ""
	if final.ResolvedAt != nil {
		// The catch-up does not need the receiver: it may have settled it
		// while the receiver was still down.
		when = fmt.Sprintf(" %s after the receiver came back", final.ResolvedAt.Sub(back).Round(time.Millisecond))
		if final.ResolvedAt.Before(back) {
			when = " while the receiver was still down (the catch-up publishes to NATS itself)"
		}
		when = fmt.Sprintf("settled %s after the start,%s", final.ResolvedAt.Sub(start).Round(time.Millisecond), when)
	}
	fmt.Fprintf(o.out, "outcome, %s: %s\n", when, raw)

	fmt.Fprintln(o.out, "\n── 4. the catch-up's report")
	after, err := o.missedAbove(ctx, before)
	if err != nil {
		return err
	}
	grew := false
	for series, n := range after {
		if n > before[series] {
			grew = true
			fmt.Fprintf(o.out, "worker /metrics: cardwire_catchup_events_total{%s} %v → %v\n", series, before[series], n)
		}
	}
	copies, err := o.stored(ctx, ev, start)
	if err != nil {
		return err
	}
	for _, h := range copies {
		if by := h.Get(streams.HeaderWebhookID); by != "" {
			fmt.Fprintf(o.out, "SEAM_EVENTS: event %s stored from webhook %s\n", ev.EventID, by)
		} else {
			fmt.Fprintf(o.out, "SEAM_EVENTS: event %s stored by the catch-up (no %s header)\n", ev.EventID, streams.HeaderWebhookID)
		}
	}
	switch {
	case len(copies) != 1:
		return fmt.Errorf("event %s is in SEAM_EVENTS %d times, want once", ev.EventID, len(copies))
	case !grew || copies[0].Get(streams.HeaderWebhookID) != "":
		return errors.New("the catch-up reported no missed event: the webhook reached the receiver after all (is -retries shorter than the simulator's schedule?)")
	case final.EventID != ev.EventID:
		return fmt.Errorf("encoding %s was settled by %q, not by event %s", rec.EncodingID, final.ResolvedBy, ev.EventID)
	}
	fmt.Fprintf(o.out, "the worker settled %s (%s) from the event the catch-up stored: the worker's log says \"catch-up stored an event the webhooks had missed\"\n",
		rec.EncodingID, final.Status)
	return nil
}

// setReceiver stops (up false) or starts the receiver through the down
// file and waits until its admin port shows it.
func (o *outage) setReceiver(ctx context.Context, up bool) error {
	if up {
		if err := os.Remove(o.downFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		o.receiverDown = false
	} else {
		if err := os.WriteFile(o.downFile, []byte("written by cardwire-dev demo-outage; remove it to start the receiver again\n"), 0o644); err != nil {
			return fmt.Errorf("%w (make run creates .data)", err)
		}
		o.receiverDown = true
	}
	path, verb := "/readyz", "start"
	if !up {
		path, verb = "/healthz", "stop"
	}
	err := poll(ctx, o.wait, func() (bool, error) { return o.answers(ctx, o.receiverAdmin+path) == up, nil })
	if err != nil {
		return fmt.Errorf("the receiver did not %s within %s (%s): is make run (scripts/run.sh) up? It keeps the receiver down while %s exists", verb, o.wait, err, o.downFile)
	}
	return nil
}

// answers reports whether GET url answers 200.
func (o *outage) answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// resolved waits for the simulator to resolve the attempt and returns its
// status.
func (o *outage) resolved(ctx context.Context, attemptID string) (string, error) {
	var status string
	err := poll(ctx, o.wait, func() (bool, error) {
		var got struct {
			ActionAttempt struct {
				Status string `json:"status"`
			} `json:"action_attempt"`
		}
		if err := postWith(ctx, o.sim+seamsim.PathGetActionAttempt, o.target.seam, map[string]string{"action_attempt_id": attemptID}, &got); err != nil {
			return false, fmt.Errorf("simulator: %w", err)
		}
		status = got.ActionAttempt.Status
		return status != "pending", nil
	})
	return status, err
}

// seamEvent is what the demo reads of a Seam event.
type seamEvent struct {
	EventID         string `json:"event_id"`
	EventType       string `json:"event_type"`
	WorkspaceID     string `json:"workspace_id"`
	AcsCredentialID string `json:"acs_credential_id"`
}

// event finds the credential's event in the simulator's /events/list.
func (o *outage) event(ctx context.Context, since time.Time, credential string) (seamEvent, error) {
	var got struct {
		Events []seamEvent `json:"events"`
	}
	req := map[string]string{"since": since.Add(-time.Second).UTC().Format(time.RFC3339Nano)}
	if err := postWith(ctx, o.sim+seamsim.PathListEvents, o.target.seam, req, &got); err != nil {
		return seamEvent{}, fmt.Errorf("simulator: %w", err)
	}
	for _, e := range got.Events {
		if e.AcsCredentialID == credential {
			return e, nil
		}
	}
	return seamEvent{}, fmt.Errorf("no event for credential %s in the simulator's /events/list (did the encode fail?)", credential)
}

// outcome waits for the encoding to settle (up to o.wait) and returns it
// with its JSON.
func (o *outage) outcome(ctx context.Context, id string) (outcomeRecord, []byte, error) {
	url := fmt.Sprintf("%s/v1/encodings/%s?wait=%s", o.api, id, o.wait)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return outcomeRecord{}, nil, err
	}
	if o.bearer != "" {
		req.Header.Set("Authorization", o.bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return outcomeRecord{}, nil, err
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		return outcomeRecord{}, nil, fmt.Errorf("GET %s: %s: %w", url, resp.Status, err)
	}
	var rec outcomeRecord
	_ = json.Unmarshal(raw, &rec)
	pretty, _ := json.MarshalIndent(raw, "          ", "  ")
	return rec, pretty, nil
}

type outcomeRecord struct {
	Status     string     `json:"status"`
	ResolvedBy string     `json:"resolved_by"`
	ResolvedAt *time.Time `json:"resolved_at"`
	EventID    string     `json:"event_id"`
}

// missed reads the worker's cardwire_catchup_events_total{result="missed"},
// by series (its labels as printed).
func (o *outage) missed(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.metrics, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", o.metrics, resp.Status)
	}
	return missedSeries(resp.Body)
}

// missedAbove waits a little for the counter to pass before: the
// catch-up counts an event after storing it, and the worker may settle
// its encoding first.
func (o *outage) missedAbove(ctx context.Context, before map[string]float64) (map[string]float64, error) {
	var after map[string]float64
	err := poll(ctx, 5*time.Second, func() (bool, error) {
		var err error
		if after, err = o.missed(ctx); err != nil {
			return false, err
		}
		for s, n := range after {
			if n > before[s] {
				return true, nil
			}
		}
		return false, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // reported by the caller
	}
	return after, err
}

// missedSeries parses the text exposition format for the missed series.
func missedSeries(r io.Reader) (map[string]float64, error) {
	const name = "cardwire_catchup_events_total{"
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		labels, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || !strings.Contains(labels, `result="missed"`) {
			continue
		}
		labels, value, ok := strings.Cut(labels, "} ")
		if !ok {
			continue
		}
		n, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s%s}: %w", name, labels, err)
		}
		out[labels] = n
	}
	return out, sc.Err()
}

// stored returns the headers of every copy of ev in SEAM_EVENTS stored
// since start.
func (o *outage) stored(ctx context.Context, ev seamEvent, start time.Time) ([]nats.Header, error) {
	subject, err := streams.EventSubject(ev.WorkspaceID, ev.EventType)
	if err != nil {
		return nil, err
	}
	from := start.Add(-time.Second)
	cons, err := o.js.OrderedConsumer(ctx, streams.EventsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", streams.EventsStream, err)
	}
	var out []nats.Header
	for {
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", streams.EventsStream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(streams.HeaderEventID) == ev.EventID {
				out = append(out, m.Headers())
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read %s: %w", streams.EventsStream, err)
		}
		if n == 0 {
			return out, nil
		}
	}
}

// poll calls cond every 100 ms until it reports true, fails, or timeout
// passes (context.DeadlineExceeded).
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
