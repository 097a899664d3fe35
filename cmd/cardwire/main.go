// Command cardwire is the operator's CLI: it registers and rotates the
// Seam webhook, replays a window of Seam's event log into SEAM_EVENTS (one
// catch-up window on demand), inspects, retries and purges dead letters,
// and reads or cancels encodings through the worker API. It is configured
// like the binaries, through the same environment variables, so that it
// runs next to them (it ships in the images: kubectl exec deploy/worker --
// /cardwire deadletters list).
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err on one line and returns the exit status: 0, 2 for a
// mistake in the command line, 1 for anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "cardwire:", strings.ReplaceAll(err.Error(), "\n", "; "))
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, `run "cardwire -h" for usage`)
		return 2
	}
	return 1
}

// usageError is a mistake in the command line (exit status 2), as
// opposed to a failure of what the command did.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

const usage = `usage: cardwire [--output text|json] [--workspace ID|NAME] <command> [flags] [args] | -version

commands:
  webhooks register --url URL [--event-types a,b] [--print-workspace-entry]
                                       create Seam's webhook for the receiver (refused if one exists for URL)
  webhooks list                        the workspace's webhooks (never their secrets)
  webhooks delete <webhook_id>         delete a webhook
  webhooks rotate --url URL            create a second webhook for URL and print the rotation's steps
  webhooks rotate --finish --old <webhook_id>
                                       delete the old webhook once its successor's secret is rolled out
  events replay --since T [--until T] [--event-types a,b|*]
                                       one catch-up window now: store what Seam's event log has and
                                       SEAM_EVENTS lacks; reports found, missed, already stored
  deadletters list [--limit N]         events a consumer gave up on, with why and how often
  deadletters show <seq>               one dead letter: headers, reason, body
  deadletters retry <seq>|--all        republish to the original subject, then remove the dead letter
  deadletters purge <seq>|--all        remove dead letters
  encodings get <id> [--wait 30s]      one encoding from the worker API
  encodings list [--status pending] [--since 1h] [--limit N]
                                       pending encodings (with --workspace and no --status: its recent ones)
  encodings cancel <id>                cancel a pending encoding

global flags (before or after the command):
  --output text|json   aligned tables (default) or JSON
  --workspace ID|NAME  the workspace: with WORKSPACES_FILE one of its workspaces by id or name
                       (default: its only one); else the workspace of SEAM_API_KEY (SEAM_WORKSPACE_ID)

T is an RFC 3339 time (2026-05-04T10:00:00Z) or a Go duration meaning that long ago (10m, 2h).

environment (as the receiver and the worker read it):
  SEAM_API_KEY, SEAM_API_KEY_FILE  Seam API key (seam_…) or personal access token (seam_at…)
  SEAM_WORKSPACE_ID                the workspace; required with a personal access token and for events replay
  SEAM_API_URL                     default https://connect.getseam.com
  WORKSPACES_FILE                  instead of the three above: each workspace's Seam credentials (--workspace picks one)
  NATS_URL, NATS_CREDS_FILE        for events and deadletters; default nats://127.0.0.1:4222
  WORKER_API_URL                   for encodings; default http://127.0.0.1:8081
  WORKER_API_TOKEN, WORKER_API_TOKEN_FILE
                                   the worker API's bearer token

Run "cardwire <command> <subcommand> -h" for its flags. Exit status: 0, 1 when the command failed, 2 for a usage error.`

// cli is one invocation: its environment, output and global flags.
type cli struct {
	getenv func(string) string
	stdout io.Writer
	g      globals
	// usages print each flag set's -h.
	usages map[*flag.FlagSet]func()
}

// globals are the flags every command takes, before or after its name.
type globals struct {
	output    string
	workspace string
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	c := &cli{getenv: getenv, stdout: stdout, g: globals{output: "text"}}
	fs := c.flags("cardwire", usage)
	showVersion := fs.Bool("version", false, "print the version and exit")
	// The top level stops at the command's name; the command's own flag set
	// takes the globals again, after it.
	if err := fs.Parse(args); err != nil {
		return c.flagErr(fs, err)
	}
	if *showVersion {
		_, err := fmt.Fprintf(stdout, "cardwire %s (commit %s)\n", lifecycle.Version(), lifecycle.Commit())
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("a command is required: webhooks, events, deadletters or encodings")
	}
	group, rest := rest[0], rest[1:]
	if group == "help" {
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	cmds, ok := commands[group]
	if !ok {
		return usagef("unknown command %q: want webhooks, events, deadletters or encodings", group)
	}
	if len(rest) == 0 || rest[0] == "-h" || rest[0] == "--help" || rest[0] == "-help" {
		if len(rest) == 0 {
			return usagef("%s needs a subcommand: %s", group, names(cmds))
		}
		_, err := fmt.Fprintln(stdout, usage)
		return err
	}
	cmd, ok := cmds[rest[0]]
	if !ok {
		return usagef("unknown subcommand %q of %s: want %s", rest[0], group, names(cmds))
	}
	return cmd(ctx, c, rest[1:])
}

type command func(ctx context.Context, c *cli, args []string) error

var commands = map[string]map[string]command{
	"webhooks": {
		"register": webhooksRegister,
		"list":     webhooksList,
		"delete":   webhooksDelete,
		"rotate":   webhooksRotate,
	},
	"events": {
		"replay": eventsReplay,
	},
	"deadletters": {
		"list":  deadlettersList,
		"show":  deadlettersShow,
		"retry": deadlettersRetry,
		"purge": deadlettersPurge,
	},
	"encodings": {
		"get":    encodingsGet,
		"list":   encodingsList,
		"cancel": encodingsCancel,
	},
}

func names(cmds map[string]command) string {
	var out []string
	for _, n := range []string{"register", "list", "show", "get", "delete", "rotate", "replay", "retry", "purge", "cancel"} {
		if cmds[n] != nil {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}
