// Command worker settles Seam card encodings: it consumes Seam events from
// SEAM_EVENTS, keeps each encode request's state in the ENCODINGS bucket,
// publishes every state change on ENCODING_EVENTS, and serves the
// /v1/encodings API.
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
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
