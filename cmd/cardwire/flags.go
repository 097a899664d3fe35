package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// flags returns a flag set with the global flags; synopsis is printed
// for -h, above the flags.
func (c *cli) flags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// Errors are returned (one line, exit status 2); -h prints to stdout.
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.g.output, "output", c.g.output, "text (aligned tables) or json")
	fs.StringVar(&c.g.workspace, "workspace", c.g.workspace, "the workspace: an id or name of WORKSPACES_FILE, else SEAM_WORKSPACE_ID's")
	// The flag package calls Usage on every error too: it stays quiet,
	// and flagErr prints the usage for -h only.
	fs.Usage = func() {}
	if c.usages == nil {
		c.usages = map[*flag.FlagSet]func(){}
	}
	c.usages[fs] = func() {
		fmt.Fprintln(c.stdout, synopsis)
		if name == "cardwire" {
			return
		}
		fmt.Fprintln(c.stdout, "\nflags:")
		fs.SetOutput(c.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// flagErr turns a flag error into the answer: -h prints the usage (and
// is no error), anything else is a usage error.
func (c *cli) flagErr(fs *flag.FlagSet, err error) error {
	if errors.Is(err, flag.ErrHelp) {
		c.usages[fs]()
		return nil
	}
	return &usageError{msg: fs.Name() + ": " + err.Error()}
}

// errHelped ends a command whose -h was answered.
var errHelped = errors.New("help printed")

// parse parses args with flags anywhere among the positional arguments
// (Go's flag package stops at the first positional one), so that
// "deadletters show 12 --output json" works as "--output json deadletters
// show 12" does. Everything after "--" is positional.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err := c.flagErr(fs, err); err != nil {
				return nil, err
			}
			return nil, errHelped
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	switch c.g.output {
	case "text", "json":
	default:
		return nil, usagef("--output must be text or json, got %q", c.g.output)
	}
	return append(pos, tail...), nil
}

// parseArgs parses a command's flags and checks it got want positional
// arguments (named in what, for the error).
func (c *cli) parseArgs(fs *flag.FlagSet, args []string, want int, what string) ([]string, error) {
	pos, err := c.parse(fs, args)
	if err != nil {
		return nil, err
	}
	if len(pos) != want {
		if want == 0 {
			return nil, usagef("%s takes no arguments, got %q", fs.Name(), pos)
		}
		return nil, usagef("%s needs %s", fs.Name(), what)
	}
	return pos, nil
}

// done ends a command: errHelped (only -h was asked for) is success.
func done(err error) error {
	if errors.Is(err, errHelped) {
		return nil
	}
	return err
}

func (c *cli) json() bool { return c.g.output == "json" }

// writeJSON writes v indented, one document per command.
func (c *cli) writeJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes aligned columns: the header, then each row.
func (c *cli) table(header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields writes aligned "name  value" lines.
func (c *cli) fields(kv ...string) error {
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			fmt.Fprintf(tw, "%s\t%s\n", kv[i], kv[i+1])
		}
	}
	return tw.Flush()
}

// oneLine makes s fit a table cell: no line breaks, at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// commaList splits a comma-separated flag value, dropping empty items.
func commaList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// when parses --since/--until: an RFC 3339 time, or a positive Go
// duration meaning that long before now.
func when(flagName, v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, usagef("--%s: want an RFC 3339 time (2026-05-04T10:00:00Z) or a Go duration meaning that long ago (10m, 2h), got %q", flagName, v)
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
