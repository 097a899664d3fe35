// Command webhook-receiver is cardwire's public edge: it verifies Seam's
// Svix-signed webhooks and stores each one in the SEAM_EVENTS stream,
// answering 204 only once JetStream has it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Signals become a cancelled context here and nowhere else, so that run
	// can be driven from tests.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "webhook-receiver:", err)
		os.Exit(1)
	}
}
