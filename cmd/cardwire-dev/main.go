// Command cardwire-dev is the local-stack helper: it makes a webhook secret
// or a development WORKSPACES_FILE, sends correctly signed sample Seam
// events to a receiver, prints what arrives in SEAM_EVENTS, and runs the
// demos of make demo and make demo-outage against make run's stack. It is
// for development only; nothing in production runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/cardwire/cardwire/internal/lifecycle"
)

// stderr receives the notes of the make targets (what of the environment
// they ignore).
var stderr io.Writer = os.Stderr

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
  ports       print the local stack's ports (PORT_BASE, NATS_PORT, …); -check: fail unless they are free

With WORKSPACES_FILE set, send, register, demo and demo-outage take the workspace from it:
-workspace names one by id or name (send signs with its secret).

The URLs default to the local stack's ports on 127.0.0.1: PORT_BASE moves them all (NATS on
PORT_BASE+22, the receiver on +80, the worker API on +81, the simulator on +90, the admin ports
on +190 and +191), NATS_PORT, RECEIVER_PORT, WORKER_API_PORT, SIM_PORT, RECEIVER_ADMIN_PORT and
WORKER_ADMIN_PORT move one each ("cardwire-dev ports -h"). The make targets set
CARDWIRE_DEV_STACK=.data: the commands then talk to the stack make run started (its ports, from
.data/stack.env while it runs, and its workspaces file), and NATS_URL, SEAM_WEBHOOK_SECRET and
WORKER_API_TOKEN of the environment are ignored, as make run ignores them.

Run "cardwire-dev <command> -h" for a command's flags.`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) (err error) {
	// A command's -h prints its flags and is no failure.
	defer func() {
		if errors.Is(err, flag.ErrHelp) {
			err = nil
		}
	}()
	if len(args) == 0 {
		return fmt.Errorf("a command is required\n%s", usage)
	}
	if strings.TrimSpace(getenv("CARDWIRE_DEV_STACK")) != "" && args[0] != "ports" {
		env, err := stackGetenv(getenv, stderr)
		if err != nil {
			return err
		}
		getenv = env
	}
	switch args[0] {
	case "secret":
		return secretArgs(args[1:], stdout)
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
	case "ports":
		return portsCmd(ctx, args[1:], getenv, stdout)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "-version", "--version", "version":
		_, err := fmt.Fprintf(stdout, "cardwire-dev %s (commit %s)\n", lifecycle.Version(), lifecycle.Commit())
		return err
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

// secretArgs runs secret, which takes no flag but -h: help, not a secret.
func secretArgs(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("secret", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: cardwire-dev secret\n\nPrints a new random webhook secret (whsec_ and 24 random bytes in base64), for\nSEAM_WEBHOOK_SECRET of the receiver and the simulator.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("secret takes no arguments, got %q", fs.Args())
	}
	return secretCmd(stdout)
}
