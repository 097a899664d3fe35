package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cardwire/cardwire/internal/catchup"
	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

const natsVars = `
environment: NATS_URL (default nats://127.0.0.1:4222), NATS_CREDS_FILE.`

// replayReport is what events replay prints in JSON.
type replayReport struct {
	WorkspaceID string    `json:"workspace_id"`
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	catchup.Report
}

func eventsReplay(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("events replay",
		"usage: cardwire events replay --since T [--until T] [--event-types a,b|*]\n\n"+
			"One catch-up window, now: lists the workspace's events in Seam's event log between --since and\n"+
			"--until and stores each in SEAM_EVENTS exactly as the receiver would (the same subject, headers\n"+
			"and message id), so an event the webhooks missed is stored once and one already stored is a\n"+
			"duplicate the stream drops (inside its duplicate window; past it the worker still applies each\n"+
			"event once). It reports found, missed (newly stored), already stored and skipped.\n"+
			"T is an RFC 3339 time or a Go duration meaning that long ago (10m)."+seamVars+natsVars)
	since := fs.String("since", "", "start of the window (required)")
	until := fs.String("until", "", "end of the window (default: now)")
	types := fs.String("event-types", "", "comma-separated event types, or * for all (default: the ones cardwire acts on)")
	if _, err := c.parseArgs(fs, args, 0, ""); err != nil {
		return done(err)
	}
	now := time.Now()
	if *since == "" {
		return usagef("events replay needs --since (an RFC 3339 time or a duration such as 1h)")
	}
	from, err := when("since", *since, now)
	if err != nil {
		return err
	}
	to := now
	if *until != "" {
		if to, err = when("until", *until, now); err != nil {
			return err
		}
	}
	if !from.Before(to) {
		return usagef("--since (%s) must be before --until (%s)", stamp(from), stamp(to))
	}
	o := catchup.DefaultOptions()
	switch v := strings.TrimSpace(*types); v {
	case "":
	case "*":
		o.EventTypes = nil
	default:
		o.EventTypes = commaList(v)
	}

	t, err := c.seam(true)
	if err != nil {
		return err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	o.Publisher, o.Registerer, o.Holder = conn.js, prometheus.NewRegistry(), "cardwire-cli"
	// Only Window is used: no lease, no checkpoint (a replay on demand
	// leaves the worker's catch-up as it is).
	o.Workspaces = func() []catchup.Workspace { return nil }
	cu, err := catchup.New(o)
	if err != nil {
		return err
	}
	rep, err := cu.Window(ctx, catchup.Workspace{ID: t.id, Label: t.label, Seam: t.client}, from, to)
	if err != nil {
		if rep.Found > 0 {
			err = fmt.Errorf("%w (before it failed: found %d, missed %d, already stored %d)", err, rep.Found, rep.Missed, rep.AlreadyStored)
		}
		var apiErr *seam.APIError
		if errors.As(err, &apiErr) || errors.Is(err, seam.ErrUnavailable) {
			return t.explain("/events/list", err)
		}
		return err
	}
	if c.json() {
		return c.writeJSON(replayReport{WorkspaceID: t.id, Since: from.UTC(), Until: to.UTC(), Report: rep})
	}
	if err := c.table([]string{"WORKSPACE", "SINCE", "UNTIL", "FOUND", "MISSED", "ALREADY_STORED", "SKIPPED"}, [][]string{{
		t.label, stamp(from), stamp(to), strconv.Itoa(rep.Found), strconv.Itoa(rep.Missed), strconv.Itoa(rep.AlreadyStored), strconv.Itoa(rep.Skipped),
	}}); err != nil {
		return err
	}
	if rep.Missed > 0 {
		fmt.Fprintf(c.stdout, "\n%d event(s) the webhooks had missed are now stored in %s; the worker applies them as they come.\n", rep.Missed, streams.EventsStream)
	}
	if rep.Skipped > 0 {
		fmt.Fprintf(c.stdout, "\n%d event(s) skipped: without a usable event id or type, or of another workspace than %s (is it the workspace of the credentials?).\n", rep.Skipped, t.id)
	}
	return nil
}
