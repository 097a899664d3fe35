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

func tailCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("nats", nats.DefaultURL, "NATS URL (NATS_URL wins when set)")
	stream := fs.String("stream", streams.EventsStream, "stream to read")
	subject := fs.String("subject", "seam.>", "subject filter")
	all := fs.Bool("all", false, "print the whole stream first, not only new messages")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if u := getenv("NATS_URL"); u != "" {
		*url = u
	}
	nc, err := nats.Connect(*url, nats.Name("cardwire-dev-tail"))
	if err != nil {
		return fmt.Errorf("connect %s: %w (is make run up?)", *url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	policy := jetstream.DeliverNewPolicy
	if *all {
		policy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, *stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{*subject}, DeliverPolicy: policy,
	})
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
	<-ctx.Done()
	return nil
}
