package catchup

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// checkpointKey is workspace ws's key in the CATCHUP bucket; its value is
// the last time fully covered, RFC 3339.
func checkpointKey(ws string) string { return "checkpoint." + ws }

func (c *Catchup) checkpoint(ctx context.Context, ws string) (time.Time, bool, error) {
	e, err := c.o.Bucket.Get(ctx, checkpointKey(ws))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, false, nil // unreadable: as if none, bounded by the lookback
	}
	return t, true, nil
}

func (c *Catchup) setCheckpoint(ctx context.Context, ws string, t time.Time) error {
	_, err := c.o.Bucket.Put(ctx, checkpointKey(ws), []byte(t.UTC().Format(time.RFC3339Nano)))
	return err
}

// observeCheckpoints sets the checkpoint gauge of every workspace, on every
// worker, so that the age alert holds whichever worker runs (or has
// stopped running) the catch-up.
func (c *Catchup) observeCheckpoints(ctx context.Context) {
	for _, ws := range c.o.Workspaces() {
		if t, ok, err := c.checkpoint(ctx, ws.ID); err == nil && ok {
			c.metrics.checkpoint.WithLabelValues(ws.Label).Set(float64(t.UnixNano()) / 1e9)
		}
	}
}
