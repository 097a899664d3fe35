package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/streams"
)

// tailReconnect are extra connect options (tests reconnect quickly).
var tailReconnect []nats.Option

func tailCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	p, err := portsOf(getenv)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("nats", p.natsURL(), "NATS URL (NATS_PORT, PORT_BASE; NATS_URL wins when set)")
	stream := fs.String("stream", streams.EventsStream, "stream to read")
	subject := fs.String("subject", "seam.>", "subject filter")
	all := fs.Bool("all", false, "print the whole stream first, not only new messages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if u := getenv("NATS_URL"); u != "" {
		*url = u
	}
	// Reconnect for ever: make tail outlives a NATS that is down for
	// minutes (make run restarted, say), and the ordered consumer resumes
	// after the last message it printed.
	closed := make(chan error, 1)
	opts := append([]nats.Option{nats.Name("cardwire-dev-tail"), nats.MaxReconnects(-1)}, tailReconnect...)
	nc, err := nats.Connect(*url, append(opts,
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed here, on Ctrl-C
				fmt.Fprintf(stderr, "tail: disconnected from %s (%v); reconnecting until it is back\n", *url, err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { fmt.Fprintf(stderr, "tail: reconnected to %s\n", *url) }),
		nats.ClosedHandler(func(*nats.Conn) { closed <- fmt.Errorf("connection to %s closed", *url) }))...)
	if err != nil {
		return fmt.Errorf("connect %s: %w (is make run up?)", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{*subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !*all {
		// New messages: after the stream's last one now, stated as a
		// sequence so that a reconnect before the first message resumes
		// there too, not at whatever is new by then.
		st, err := js.Stream(ctx, *stream)
		if err != nil {
			return fmt.Errorf("stream %s: %w (is make run up? The receiver and the worker create the streams)", *stream, err)
		}
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, st.CachedInfo().State.LastSeq+1
	}
	cons, err := js.OrderedConsumer(ctx, *stream, cfg)
	if err != nil {
		return fmt.Errorf("consume %s: %w", *stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		meta, _ := m.Metadata()
		seq := uint64(0)
		if meta != nil {
			seq = meta.Sequence.Stream
		}
		fmt.Fprintf(stdout, "── #%d %s\n", seq, m.Subject())
		h := m.Headers()
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(stdout, "   %s: %s\n", k, h.Get(k))
		}
		fmt.Fprintf(stdout, "   %s\n", m.Data())
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	fmt.Fprintf(stdout, "watching %s on %s (Ctrl-C to stop)\n", *subject, *stream)
	select {
	case <-ctx.Done():
		return nil
	case err := <-closed:
		return err
	}
}
