// Command subscriber is an example subscriber of cardwire's outcome
// messages (README, "For subscribers"): a durable JetStream consumer on
// ENCODING_EVENTS that applies each (encoding_id, revision) at most once,
// in revision order, and prints what it applied.
//
//	go run ./examples/subscriber -workspace <workspace_id>
//
// It uses nothing from cardwire's own packages, only nats.go, so it can be
// copied into another code base as it is. Every outcome message carries the
// whole encoding record (docs/schemas/encoding-outcome.schema.json), so the
// highest revision seen is the current state: a revision that arrives after
// a higher one (a redelivery) is ignored, and nothing is lost by ignoring it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "subscriber:", err)
		os.Exit(1)
	}
}

// The names this example depends on (docs/asyncapi.yaml).
const (
	outcomesStream = "ENCODING_EVENTS"
	outcomesPrefix = "encodings" // encodings.<workspace_id>.<status>
)

// token is what a workspace id must look like to be a subject token.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// run reads its configuration from args and getenv, consumes until ctx
// ends, and prints one line per message to stdout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("subscriber", flag.ContinueOnError)
	fs.SetOutput(stdout)
	natsURL := fs.String("nats", or(getenv("NATS_URL"), nats.DefaultURL), "NATS server URL(s), comma-separated (NATS_URL)")
	creds := fs.String("creds", getenv("NATS_CREDS_FILE"), "NATS credentials file (NATS_CREDS_FILE)")
	durable := fs.String("durable", or(getenv("SUBSCRIBER_DURABLE"), "example-subscriber"), "durable consumer name (SUBSCRIBER_DURABLE)")
	workspace := fs.String("workspace", getenv("SUBSCRIBER_WORKSPACE_ID"), "only this workspace's outcomes; all when empty (SUBSCRIBER_WORKSPACE_ID)")
	bind := fs.Bool("bind", getenv("SUBSCRIBER_BIND") == "true", "bind a durable an operator created instead of creating or updating it (SUBSCRIBER_BIND=true)")
	// With deploy/k8s/components/subscriber-access a subscriber reaches
	// cardwire's streams only through the JetStream domain "cardwire".
	domain := fs.String("js-domain", getenv("SUBSCRIBER_JS_DOMAIN"), "JetStream domain of cardwire's streams, e.g. cardwire (SUBSCRIBER_JS_DOMAIN); none when empty")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	filter := outcomesPrefix + ".>"
	if *workspace != "" {
		if !token.MatchString(*workspace) {
			return fmt.Errorf("SUBSCRIBER_WORKSPACE_ID %q is not a workspace id", *workspace)
		}
		filter = outcomesPrefix + "." + *workspace + ".>"
	}

	opts := []nats.Option{nats.Name("cardwire-example-subscriber"), nats.MaxReconnects(-1)}
	if *creds != "" {
		opts = append(opts, nats.UserCredentials(*creds))
	}
	nc, err := nats.Connect(*natsURL, opts...)
	if err != nil {
		return fmt.Errorf("connect to NATS_URL: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if *domain != "" {
		js, err = jetstream.NewWithDomain(nc, *domain)
	}
	if err != nil {
		return err
	}
	cons, err := consumer(ctx, js, *durable, filter, *bind)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "subscribed stream=%s durable=%s filter=%s\n", outcomesStream, *durable, filter)

	s := &subscriber{out: stdout, applied: map[string]uint64{}}
	// Consume calls s.handle for one message at a time, in delivery order.
	cc, err := cons.Consume(s.handle, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		fmt.Fprintf(stdout, "consume: %v\n", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", *durable, err)
	}
	<-ctx.Done()
	// Let the message in hand finish (and be acked) before the connection
	// closes; what was not acked is redelivered to the next run.
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(10 * time.Second):
	}
	return nil
}

// consumer creates or updates the durable consumer, or only binds it.
// Creating it needs the right to manage consumers on ENCODING_EVENTS;
// where the NATS user may only read (README, "Deploying"), an operator
// creates it once with this configuration and the subscriber binds it.
func consumer(ctx context.Context, js jetstream.JetStream, durable, filter string, bind bool) (jetstream.Consumer, error) {
	if bind {
		c, err := js.Consumer(ctx, outcomesStream, durable)
		if err != nil {
			return nil, fmt.Errorf("bind consumer %s on %s: %w", durable, outcomesStream, err)
		}
		return c, nil
	}
	c, err := js.CreateOrUpdateConsumer(ctx, outcomesStream, jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "example subscriber of cardwire outcomes",
		FilterSubject: filter,
		// From the oldest outcome the stream keeps (ENCODING_EVENTS_MAX_AGE)
		// the first time; from where it left off afterwards.
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// A message not acked within AckWait is delivered again, possibly
		// after later ones: the revision check below handles that.
		AckWait:    30 * time.Second,
		MaxDeliver: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s on %s: %w", durable, outcomesStream, err)
	}
	return c, nil
}

// outcome is the part of an outcome message this example uses; the message
// has the whole record (docs/schemas/encoding-outcome.schema.json).
type outcome struct {
	EncodingID string `json:"encoding_id"`
	Status     string `json:"status"`
	Revision   uint64 `json:"revision"`
	CardNumber string `json:"card_number"`
	Error      *struct {
		Type string `json:"type"`
	} `json:"error"`
}

// subscriber applies outcomes in revision order, each at most once.
type subscriber struct {
	out io.Writer
	// applied is the highest revision applied per encoding. It is in
	// memory for this example only: a restart forgets it (the durable
	// consumer still resumes after the last acked message). Production
	// keeps it in its own store, written in the same transaction as the
	// effect (for example a revision column next to the booking's card
	// state, updated only where the stored revision is lower), so that
	// neither a restart, a redelivery nor a second replica applies a
	// revision twice.
	applied map[string]uint64
}

// handle applies one message, or skips it, and acks it either way; a
// message that is not an outcome is terminated, since it can never be
// applied.
func (s *subscriber) handle(msg jetstream.Msg) {
	var o outcome
	if err := json.Unmarshal(msg.Data(), &o); err != nil || o.EncodingID == "" || o.Revision == 0 {
		fmt.Fprintf(s.out, "rejected subject=%s: not an outcome message\n", msg.Subject())
		_ = msg.Term()
		return
	}
	last := s.applied[o.EncodingID]
	switch {
	case o.Revision == last:
		fmt.Fprintf(s.out, "skipped encoding=%s revision=%d: already applied\n", o.EncodingID, o.Revision)
	case o.Revision < last:
		fmt.Fprintf(s.out, "skipped encoding=%s revision=%d: older than revision %d\n", o.EncodingID, o.Revision, last)
	default:
		s.apply(o)
		s.applied[o.EncodingID] = o.Revision
	}
	// Acked only after the effect: a crash before the ack redelivers the
	// message, which the revision check then skips.
	_ = msg.Ack()
}

// apply is where a real subscriber acts on the new state (update the
// booking, tell the front desk); an issued revision may be followed by
// another issued one that adds card_number.
func (s *subscriber) apply(o outcome) {
	line := fmt.Sprintf("applied encoding=%s revision=%d status=%s", o.EncodingID, o.Revision, o.Status)
	if o.CardNumber != "" {
		line += " card_number=" + o.CardNumber
	}
	if o.Error != nil {
		line += " error=" + o.Error.Type
	}
	fmt.Fprintln(s.out, line)
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
