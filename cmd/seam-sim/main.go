// Command seam-sim serves an in-memory stand-in for Seam Connect
// (internal/seamsim) for the local stack: the encode and action-attempt
// routes the worker calls, with signed webhooks to the local receiver.
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
		fmt.Fprintln(os.Stderr, "seam-sim:", err)
		os.Exit(1)
	}
}
