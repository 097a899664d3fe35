package catchup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/cardwire/cardwire/internal/seam"
	"github.com/cardwire/cardwire/internal/streams"
)

// Lister is the Seam call the catch-up makes, with one workspace's
// credentials.
type Lister interface {
	ListEvents(ctx context.Context, req seam.ListEventsRequest) ([]json.RawMessage, error)
}

// Workspace is one workspace to catch up on.
type Workspace struct {
	ID string
	// Label names it in logs and metrics.
	Label string
	Seam  Lister
}

type publisher interface {
	PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Options configure a Catchup.
type Options struct {
	// Publisher stores events in SEAM_EVENTS.
	Publisher publisher
	// Bucket is streams.EnsureCatchup's: the lease and the checkpoints.
	// Only Run needs it; Window (a replay on demand) does not.
	Bucket jetstream.KeyValue
	// Workspaces returns the workspaces with Seam credentials, as
	// configured now (WORKSPACES_FILE may change between runs); Run's.
	Workspaces func() []Workspace
	// Interval is how often the holder runs (CATCHUP_INTERVAL); the lease
	// lives three of them unless renewed.
	Interval time.Duration
	// Overlap is how far back of its checkpoint each run starts
	// (CATCHUP_OVERLAP), for events Seam lists a little after they
	// occurred.
	Overlap time.Duration
	// Lookback bounds how far back a workspace's first run looks
	// (CATCHUP_LOOKBACK).
	Lookback time.Duration
	// EventTypes are listed; nil lists every type (CATCHUP_EVENT_TYPES=*).
	EventTypes []string
	// PageLimit is the limit of one /events/list; a window that comes back
	// full is split in two by time.
	PageLimit int
	// Holder names this process in the lease.
	Holder     string
	Log        zerolog.Logger
	Registerer prometheus.Registerer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// DefaultOptions returns the documented defaults; Publisher and Registerer
// must still be set, and for Run, Bucket, Workspaces and Holder.
func DefaultOptions() Options {
	return Options{Interval: 5 * time.Minute, Overlap: 2 * time.Minute, Lookback: 24 * time.Hour,
		EventTypes: streams.SubscribedEventTypes(), PageLimit: 500, Log: zerolog.Nop()}
}

// Validate reports the first option that cannot work.
func (o Options) Validate() error {
	switch {
	case o.Publisher == nil:
		return errors.New("Options.Publisher must be set")
	case o.Registerer == nil:
		return errors.New("Options.Registerer must be set")
	case o.Bucket != nil && (o.Holder == "" || o.Workspaces == nil):
		// Only Run (which needs the bucket) uses them.
		return errors.New("Options.Holder and Workspaces must be set with Options.Bucket")
	case o.Interval < time.Second || o.Overlap < 0 || o.Lookback <= 0:
		// The lease's TTL is three intervals, and a key TTL is at least 1 s.
		return errors.New("Options.Interval must be at least 1s, Lookback positive, Overlap not negative")
	case o.PageLimit < 2:
		return errors.New("Options.PageLimit must be at least 2")
	}
	return nil
}

// Catchup is the catch-up of one worker.
type Catchup struct {
	o       Options
	lease   *lease
	metrics *metrics
}

// New validates o and registers the catch-up's metrics.
func New(o Options) (*Catchup, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Catchup{o: o, metrics: m, lease: &lease{kv: o.Bucket, js: o.Publisher, holder: o.Holder, ttl: 3 * o.Interval}}, nil
}

// Run runs the catch-up at once and every Interval while this process
// holds the lease, until ctx ends; then it gives the lease up, so that
// another worker takes over at its next interval rather than after the
// TTL. Every worker also reads the checkpoints each interval, for the
// checkpoint-age metric.
func (c *Catchup) Run(ctx context.Context) {
	if c.o.Bucket == nil {
		c.o.Log.Error().Msg("catch-up has no CATCHUP bucket; not running")
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.release()
			return
		case <-t.C:
		}
		held, err := c.lease.hold(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			c.o.Log.Warn().Err(err).Msg("catch-up lease not read; trying again next interval")
		case held:
			c.metrics.leaseHeld.Set(1)
			c.RunOnce(ctx)
		default:
			c.metrics.leaseHeld.Set(0)
		}
		c.observeCheckpoints(ctx)
		t.Reset(c.o.Interval)
	}
}

func (c *Catchup) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.lease.release(ctx); err != nil {
		c.o.Log.Warn().Err(err).Msg("catch-up lease not given up; it expires on its own")
	}
	c.metrics.leaseHeld.Set(0)
}

// RunOnce catches up every workspace from its checkpoint to now. A
// workspace whose listing fails keeps its checkpoint (the next run covers
// the same window) and does not stop the others.
func (c *Catchup) RunOnce(ctx context.Context) {
	if c.o.Workspaces == nil {
		return
	}
	for _, ws := range c.o.Workspaces() {
		if ctx.Err() != nil {
			return
		}
		c.runWorkspace(ctx, ws)
	}
}

func (c *Catchup) runWorkspace(ctx context.Context, ws Workspace) {
	log := c.o.Log.With().Str("workspace_id", ws.ID).Str("workspace", ws.Label).Logger()
	now := c.o.Now()
	cp, found, err := c.checkpoint(ctx, ws.ID)
	if err != nil {
		c.metrics.runs.WithLabelValues(ws.Label, resultError).Inc()
		log.Warn().Err(err).Msg("catch-up checkpoint not read; trying again next interval")
		return
	}
	since := now.Add(-c.o.Lookback)
	if from := cp.Add(-c.o.Overlap); found && from.After(since) {
		since = from
	}
	rep, err := c.Window(ctx, ws, since, now)
	if err != nil {
		result := resultError
		var apiErr *seam.APIError
		if errors.As(err, &apiErr) && (apiErr.Status == 401 || apiErr.Status == 403) {
			result = resultRefused
		}
		c.metrics.runs.WithLabelValues(ws.Label, result).Inc()
		log.Error().Err(err).Str("result", result).Time("since", since).Msg("catch-up run failed; its window is covered again next interval")
		return
	}
	if err := c.setCheckpoint(ctx, ws.ID, now); err != nil {
		c.metrics.runs.WithLabelValues(ws.Label, resultError).Inc()
		log.Warn().Err(err).Msg("catch-up checkpoint not stored; the window is covered again next interval")
		return
	}
	c.metrics.runs.WithLabelValues(ws.Label, resultOK).Inc()
	ev := log.Info()
	if rep.Missed == 0 {
		ev = log.Debug()
	}
	ev.Time("since", since).Time("until", now).Int("found", rep.Found).Int("missed", rep.Missed).
		Int("already_stored", rep.AlreadyStored).Msg("catch-up run")
}

// Report is what one window found.
type Report struct {
	// Found is every event listed (an event listed by two halves of a
	// split window counts twice).
	Found int `json:"found"`
	// Missed were not in SEAM_EVENTS: the webhook path had missed them.
	Missed int `json:"missed"`
	// AlreadyStored were (the stream's duplicate window dropped them).
	AlreadyStored int `json:"already_stored"`
	// Skipped could not be stored: no usable event id or type, or another
	// workspace than the credentials'.
	Skipped int `json:"skipped"`
}

func (r *Report) add(o Report) {
	r.Found += o.Found
	r.Missed += o.Missed
	r.AlreadyStored += o.AlreadyStored
	r.Skipped += o.Skipped
}

// minSplit is the narrowest window split further: one that still comes
// back full is paged with Seam's offset, at most maxDensePages pages.
const (
	minSplit      = 2 * time.Millisecond
	maxDensePages = 100
)

// Window lists workspace ws's events that Seam created between since and
// until (both included) and stores each one. A window that comes back
// full (PageLimit events) is split in two by time, since /events/list has
// no cursor. The order of events within a page does not matter: each is
// stored on its own id.
func (c *Catchup) Window(ctx context.Context, ws Workspace, since, until time.Time) (Report, error) {
	// Seam's between is exclusive at both ends.
	return c.window(ctx, ws, since.Add(-time.Millisecond), until.Add(time.Millisecond))
}

func (c *Catchup) window(ctx context.Context, ws Workspace, after, before time.Time) (Report, error) {
	events, err := ws.Seam.ListEvents(ctx, seam.ListEventsRequest{Between: &[2]time.Time{after, before}, EventTypes: c.o.EventTypes, Limit: c.o.PageLimit})
	if err != nil {
		return Report{}, fmt.Errorf("list events of %s between %s and %s: %w", ws.ID, after.Format(time.RFC3339Nano), before.Format(time.RFC3339Nano), err)
	}
	if len(events) >= c.o.PageLimit {
		if before.Sub(after) >= 2*minSplit {
			// The halves overlap by a millisecond, so an event on the
			// boundary is in one of them (a second copy is a duplicate).
			mid := after.Add(before.Sub(after) / 2)
			first, err := c.window(ctx, ws, after, mid.Add(time.Millisecond))
			if err != nil {
				return first, err
			}
			second, err := c.window(ctx, ws, mid, before)
			first.add(second)
			return first, err
		}
		// Too narrow to split: page on with Seam's offset until an answer
		// is short. The order may shift between pages (an event created
		// meanwhile): the page after the last is read too, and a shifted
		// event is listed twice at worst (a duplicate), or, if more than a
		// page arrived in these 2 ms meanwhile, counted as too dense.
		for offset := c.o.PageLimit; ; offset += c.o.PageLimit {
			more, err := ws.Seam.ListEvents(ctx, seam.ListEventsRequest{Between: &[2]time.Time{after, before}, EventTypes: c.o.EventTypes,
				Limit: c.o.PageLimit, Offset: offset})
			if err != nil {
				return Report{}, fmt.Errorf("list events of %s at offset %d: %w", ws.ID, offset, err)
			}
			events = append(events, more...)
			if len(more) < c.o.PageLimit {
				break
			}
			if offset >= maxDensePages*c.o.PageLimit {
				c.metrics.tooDense.Inc()
				c.o.Log.Error().Str("workspace_id", ws.ID).Time("after", after).Time("before", before).Int("listed", len(events)).
					Msg("catch-up window still full after paging; storing what was listed")
				break
			}
		}
	}
	var rep Report
	for _, raw := range events {
		rep.Found++
		res, err := c.store(ctx, ws, raw)
		if err != nil {
			return rep, err
		}
		switch res {
		case resultMissed:
			rep.Missed++
		case resultAlreadyStored:
			rep.AlreadyStored++
		default:
			rep.Skipped++
		}
		c.metrics.events.WithLabelValues(ws.Label, res).Inc()
	}
	return rep, nil
}

// envelope is what the catch-up reads of an event.
type envelope struct {
	EventID     string `json:"event_id"`
	EventType   string `json:"event_type"`
	WorkspaceID string `json:"workspace_id"`
}

// store publishes one listed event as the receiver would.
func (c *Catchup) store(ctx context.Context, ws Workspace, raw json.RawMessage) (string, error) {
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil || env.EventID == "" {
		c.o.Log.Warn().Str("workspace_id", ws.ID).Msg("catch-up: Seam listed an event without a usable event_id; skipped")
		return resultSkipped, nil
	}
	if env.WorkspaceID != ws.ID {
		// Listed with ws's credentials, so it should be ws's: never stored
		// under another workspace.
		c.o.Log.Warn().Str("workspace_id", ws.ID).Str("event_id", env.EventID).Str("event_workspace_id", env.WorkspaceID).
			Msg("catch-up: an event of another workspace listed; skipped")
		return resultSkipped, nil
	}
	msg, err := streams.EventMsg(raw, streams.Event{EventID: env.EventID, EventType: env.EventType, WorkspaceID: env.WorkspaceID})
	if err != nil {
		c.o.Log.Warn().Err(err).Str("workspace_id", ws.ID).Str("event_id", env.EventID).Msg("catch-up: event not storable; skipped")
		return resultSkipped, nil
	}
	ack, err := c.o.Publisher.PublishMsg(ctx, msg)
	if err != nil {
		return "", fmt.Errorf("store event %s: %w", env.EventID, err)
	}
	if ack.Duplicate {
		return resultAlreadyStored, nil
	}
	c.o.Log.Info().Str("workspace_id", ws.ID).Str("event_id", env.EventID).Str("event_type", env.EventType).
		Msg("catch-up stored an event the webhooks had missed")
	return resultMissed, nil
}
