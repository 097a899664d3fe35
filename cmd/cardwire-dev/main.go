// Command cardwire-dev is the local-stack helper: it makes a webhook secret
// or a development WORKSPACES_FILE, sends correctly signed sample Seam
// events to a receiver, prints what arrives in SEAM_EVENTS, and runs the
// demos of make demo and make demo-outage against make run's stack. It is
// for development only; nothing in production runs it.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/cardwire/cardwire/internal/lifecycle"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cardwire-dev:", err)
		os.Exit(1)
	}
}

const usage = `usage: cardwire-dev <command> [flags] | -version

commands:
  secret      print a new random whsec_ webhook secret
  workspaces  write a development WORKSPACES_FILE with two properties (-o FILE), or list one (-list)
  send        sign a sample Seam event with the svix library and POST it to the receiver
  register    register a pending encoding with the local worker's API
  demo        start a succeeding and a failing encoding (in each workspace) through the worker and the Seam simulator
  demo-outage with make run up: stop the receiver, start an encoding (in the first workspace), start the
              receiver again once the webhook has failed, and show the catch-up settling it
  tail        print every message that arrives in SEAM_EVENTS (or -stream ENCODING_EVENTS)

With WORKSPACES_FILE set, send, register, demo and demo-outage take the workspace from it:
-workspace names one by id or name (send signs with its secret).

Run "cardwire-dev <command> -h" for a command's flags.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("a command is required\n%s", usage)
	}
	switch args[0] {
	case "secret":
		return secretCmd(stdout)
	case "workspaces":
		return workspacesCmd(args[1:], getenv, stdout)
	case "send":
		return sendCmd(ctx, args[1:], getenv, stdout)
	case "demo":
		return demoCmd(ctx, args[1:], getenv, stdout)
	case "demo-outage":
		return outageCmd(ctx, args[1:], getenv, stdout)
	case "register":
		return registerCmd(ctx, args[1:], getenv, stdout)
	case "tail":
		return tailCmd(ctx, args[1:], getenv, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "-version", "--version", "version":
		_, err := fmt.Fprintf(stdout, "cardwire-dev %s\n", lifecycle.Version())
		return err
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}
