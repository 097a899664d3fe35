package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/streams"
)

// retryMsgIDPrefix starts the message id of a retried event: see retryMsg.
const retryMsgIDPrefix = "retry:"

var deadLetterFilter = streams.DeadLetterSubjectPrefix + ".>"

// deadLetter is one dead letter as the commands print it.
type deadLetter struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// Consumer gave up on the event (the last token of the dead-letter
	// subject).
	Consumer    string `json:"consumer"`
	Subject     string `json:"subject"`
	EventID     string `json:"event_id,omitempty"`
	EventType   string `json:"event_type,omitempty"`
	WorkspaceID string `json:"workspace_id,omitempty"`
	Reason      string `json:"reason"`
	Deliveries  int    `json:"deliveries"`
	// Headers and Body only in show.
	Headers map[string][]string `json:"headers,omitempty"`
	Body    json.RawMessage     `json:"body,omitempty"`

	raw *jetstream.RawStreamMsg
}

func newDeadLetter(m *jetstream.RawStreamMsg) deadLetter {
	h := m.Header
	d := deadLetter{
		Seq: m.Sequence, Time: m.Time.UTC(), Consumer: strings.TrimPrefix(m.Subject, streams.DeadLetterSubjectPrefix+"."),
		Subject: h.Get(streams.HeaderOriginalSubject), EventID: h.Get(streams.HeaderEventID), EventType: h.Get(streams.HeaderEventType),
		WorkspaceID: h.Get(streams.HeaderWorkspaceID), Reason: h.Get(streams.HeaderDeadLetterReason), raw: m,
	}
	d.Deliveries, _ = strconv.Atoi(h.Get(streams.HeaderDeadLetterDeliveries))
	return d
}

func (d deadLetter) withContent() deadLetter {
	d.Headers = map[string][]string(d.raw.Header)
	if json.Valid(d.raw.Data) {
		d.Body = d.raw.Data
	} else {
		d.Body, _ = json.Marshal(string(d.raw.Data))
	}
	return d
}

// scan reads the dead letters in stream order, at most limit (0: all).
// more reports whether there were others after the last one read.
func scan(ctx context.Context, st jetstream.Stream, limit int) (dls []deadLetter, more bool, err error) {
	for seq := uint64(1); ; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(deadLetterFilter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return dls, false, nil
		}
		if err != nil {
			return dls, false, fmt.Errorf("read dead letters from %s: %w", streams.EventsStream, err)
		}
		if limit > 0 && len(dls) == limit {
			return dls, true, nil
		}
		dls = append(dls, newDeadLetter(m))
		seq = m.Sequence + 1
	}
}

// one reads the dead letter at seq, refusing any other message of the
// stream: retry and purge must never touch an event itself.
func one(ctx context.Context, st jetstream.Stream, seq uint64) (deadLetter, error) {
	m, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return deadLetter{}, fmt.Errorf("no message %d in %s: already retried or purged? (deadletters list shows the ones left)", seq, streams.EventsStream)
	}
	if err != nil {
		return deadLetter{}, fmt.Errorf("read message %d of %s: %w", seq, streams.EventsStream, err)
	}
	if !strings.HasPrefix(m.Subject, streams.DeadLetterSubjectPrefix+".") {
		return deadLetter{}, fmt.Errorf("message %d of %s is not a dead letter (its subject is %s; deadletters list shows them)", seq, streams.EventsStream, m.Subject)
	}
	return newDeadLetter(m), nil
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, usagef("want a stream sequence number (deadletters list shows them), got %q", s)
	}
	return seq, nil
}

func deadlettersList(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("deadletters list",
		"usage: cardwire deadletters list [--limit N]\n\n"+
			"The events a consumer gave up on (seam.deadletter.<consumer> in SEAM_EVENTS), oldest first: the\n"+
			"stream sequence to retry or purge by, when, the original subject and event, how many deliveries\n"+
			"were tried and why it failed."+natsVars)
	limit := fs.Int("limit", 100, "list at most this many (0: all)")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return done(err)
	}
	if *limit < 0 {
		return usagef("--limit must not be negative")
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	dls, more, err := scan(ctx, conn.stream, *limit)
	if err != nil {
		return err
	}
	if c.json() {
		return c.writeJSON(struct {
			DeadLetters []deadLetter `json:"dead_letters"`
			More        bool         `json:"more,omitempty"`
		}{append([]deadLetter{}, dls...), more})
	}
	if len(dls) == 0 {
		_, err := fmt.Fprintf(c.stdout, "no dead letters in %s\n", streams.EventsStream)
		return err
	}
	var rows [][]string
	for _, d := range dls {
		rows = append(rows, []string{strconv.FormatUint(d.Seq, 10), stamp(d.Time), d.Subject, d.EventID,
			strconv.Itoa(d.Deliveries), oneLine(d.Reason, 80)})
	}
	if err := c.table([]string{"SEQ", "TIME", "SUBJECT", "EVENT_ID", "DELIVERIES", "REASON"}, rows); err != nil {
		return err
	}
	if more {
		_, err = fmt.Fprintf(c.stdout, "(more after these %d: --limit 0 lists all)\n", len(dls))
	}
	return err
}

func deadlettersShow(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("deadletters show", "usage: cardwire deadletters show <seq>\n\nOne dead letter: what failed, why, how often, its headers and body."+natsVars)
	pos, err := c.parseArgs(fs, args, 1, "a stream sequence number (deadletters list shows them)")
	if err != nil {
		return done(err)
	}
	seq, err := parseSeq(pos[0])
	if err != nil {
		return err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	d, err := one(ctx, conn.stream, seq)
	if err != nil {
		return err
	}
	d = d.withContent()
	if c.json() {
		return c.writeJSON(d)
	}
	if err := c.fields("seq", strconv.FormatUint(d.Seq, 10), "time", stamp(d.Time), "consumer", d.Consumer,
		"subject", d.Subject, "event_id", d.EventID, "event_type", d.EventType, "workspace_id", d.WorkspaceID,
		"deliveries", strconv.Itoa(d.Deliveries), "reason", oneLine(d.Reason, 1000)); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "\nheaders:")
	keys := make([]string, 0, len(d.Headers))
	for k := range d.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(c.stdout, "  %s: %s\n", k, strings.Join(d.Headers[k], ", "))
	}
	fmt.Fprintln(c.stdout, "\nbody:")
	var pretty strings.Builder
	if json.Valid(d.raw.Data) {
		var buf []byte
		if buf, err = json.MarshalIndent(json.RawMessage(d.raw.Data), "", "  "); err == nil {
			pretty.Write(buf)
		}
	}
	if pretty.Len() == 0 {
		pretty.Write(d.raw.Data)
	}
	_, err = fmt.Fprintln(c.stdout, pretty.String())
	return err
}

// selection is <seq> or --all.
func (c *cli) selection(ctx context.Context, name, synopsis string, args []string) (*natsConn, []deadLetter, error) {
	fs := c.flags(name, synopsis)
	all := fs.Bool("all", false, "every dead letter there is now")
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, nil, err
	}
	var seq uint64
	switch {
	case *all && len(pos) > 0, !*all && len(pos) != 1:
		return nil, nil, usagef("%s needs one stream sequence number or --all", name)
	case !*all:
		if seq, err = parseSeq(pos[0]); err != nil {
			return nil, nil, err
		}
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, nil, err
	}
	var dls []deadLetter
	if *all {
		// What is there now: a dead letter arriving meanwhile is left for
		// the next look.
		dls, _, err = scan(ctx, conn.stream, 0)
	} else {
		var d deadLetter
		d, err = one(ctx, conn.stream, seq)
		dls = []deadLetter{d}
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, dls, nil
}

// retried is one dead letter put back.
type retried struct {
	Seq uint64 `json:"seq"`
	// NewSeq is the retried event's sequence in SEAM_EVENTS.
	NewSeq  uint64 `json:"new_seq"`
	Subject string `json:"subject"`
	EventID string `json:"event_id,omitempty"`
}

func deadlettersRetry(ctx context.Context, c *cli, args []string) error {
	conn, dls, err := c.selection(ctx, "deadletters retry",
		"usage: cardwire deadletters retry <seq> | --all\n\n"+
			"Republishes each dead letter's event to SEAM_EVENTS on its original subject with its original\n"+
			"headers, so that the consumers get it again, then deletes the dead letter. Retry once the cause\n"+
			"is fixed: an event that fails again is dead-lettered again."+natsVars, args)
	if err != nil {
		return done(err)
	}
	defer conn.Close()
	put := []retried{}
	for _, d := range dls {
		r, err := retryOne(ctx, conn, d)
		if err != nil {
			if len(put) > 0 {
				err = fmt.Errorf("%w (retried before it: %d)", err, len(put))
			}
			return err
		}
		put = append(put, r)
	}
	if c.json() {
		return c.writeJSON(struct {
			Retried []retried `json:"retried"`
		}{put})
	}
	if len(put) == 0 {
		_, err := fmt.Fprintf(c.stdout, "no dead letters in %s\n", streams.EventsStream)
		return err
	}
	var rows [][]string
	for _, r := range put {
		rows = append(rows, []string{strconv.FormatUint(r.Seq, 10), strconv.FormatUint(r.NewSeq, 10), r.Subject, r.EventID})
	}
	return c.table([]string{"SEQ", "NEW_SEQ", "SUBJECT", "EVENT_ID"}, rows)
}

// retryOne republishes d's event, then deletes d.
func retryOne(ctx context.Context, conn *natsConn, d deadLetter) (retried, error) {
	msg, err := retryMsg(d)
	if err != nil {
		return retried{}, fmt.Errorf("retry dead letter %d: %w", d.Seq, err)
	}
	ack, err := conn.js.PublishMsg(ctx, msg)
	if err != nil {
		return retried{}, fmt.Errorf("retry dead letter %d: publish to %s: %w", d.Seq, msg.Subject, err)
	}
	if err := conn.stream.DeleteMsg(ctx, d.Seq); err != nil {
		// Running the retry again is safe: its message id dedupes the
		// second copy.
		return retried{}, fmt.Errorf("retry dead letter %d: republished as %d, but the dead letter was not deleted (retry or purge it again): %w", d.Seq, ack.Sequence, err)
	}
	return retried{Seq: d.Seq, NewSeq: ack.Sequence, Subject: msg.Subject, EventID: d.EventID}, nil
}

// retryMsg is the event of dead letter d as it was first stored: its
// original subject and headers, without what the dead letter added.
//
// Its message id is not the original evt:<event_id>: inside the stream's
// duplicate window (an hour by default) the stream would take that for
// the first copy and drop it, so the consumers would never see the retry.
// Nor is it left out: "retry:<dead letter seq>" makes the retry itself
// idempotent, so a retry that stored the event but failed to delete the
// dead letter, run again, stores it once. The worker applies each
// event_id once whatever the message id, and Seam-Event-Id stays, for
// other subscribers to dedupe on.
func retryMsg(d deadLetter) (*nats.Msg, error) {
	subject := d.Subject
	if subject == "" {
		// A dead letter without the original subject: rebuild it as
		// every producer does.
		s, err := streams.EventSubject(d.WorkspaceID, d.EventType)
		if err != nil {
			return nil, fmt.Errorf("it has no %s header, and its %s/%s headers make no event subject: %w",
				streams.HeaderOriginalSubject, streams.HeaderWorkspaceID, streams.HeaderEventType, err)
		}
		subject = s
	}
	if !strings.HasPrefix(subject, streams.EventsSubjectPrefix+".") {
		return nil, fmt.Errorf("its original subject %q is not an event subject (%s.…)", subject, streams.EventsSubjectPrefix)
	}
	h := nats.Header{}
	for k, v := range d.raw.Header {
		switch k {
		case streams.HeaderDeadLetterReason, streams.HeaderDeadLetterDeliveries, streams.HeaderOriginalSubject, jetstream.MsgIDHeader:
			continue
		}
		h[k] = slices.Clone(v)
	}
	h.Set(jetstream.MsgIDHeader, retryMsgIDPrefix+strconv.FormatUint(d.Seq, 10))
	// As every producer: a stream that does not capture the subject must
	// not store it silently.
	h.Set(jetstream.ExpectedStreamHeader, streams.EventsStream)
	h.Set(streams.HeaderRetryOf, strconv.FormatUint(d.Seq, 10))
	return &nats.Msg{Subject: subject, Header: h, Data: d.raw.Data}, nil
}

func deadlettersPurge(ctx context.Context, c *cli, args []string) error {
	conn, dls, err := c.selection(ctx, "deadletters purge",
		"usage: cardwire deadletters purge <seq> | --all\n\n"+
			"Deletes dead letters from SEAM_EVENTS (the original events stay until the stream's max age)."+natsVars, args)
	if err != nil {
		return done(err)
	}
	defer conn.Close()
	purged := []uint64{}
	for _, d := range dls {
		if err := conn.stream.DeleteMsg(ctx, d.Seq); err != nil {
			return fmt.Errorf("purge dead letter %d: %w (purged before it: %d)", d.Seq, err, len(purged))
		}
		purged = append(purged, d.Seq)
	}
	if c.json() {
		return c.writeJSON(struct {
			Purged []uint64 `json:"purged"`
		}{purged})
	}
	if len(purged) == 0 {
		_, err := fmt.Fprintf(c.stdout, "no dead letters in %s\n", streams.EventsStream)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "purged %d dead letter(s): %s\n", len(purged), strings.Trim(fmt.Sprint(purged), "[]"))
	return err
}
