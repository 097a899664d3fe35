package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CatchupBucket holds the catch-up's lease (which worker runs it) and its
// checkpoint per workspace.
const CatchupBucket = "CATCHUP"

// SubscribedEventTypes are the Seam event types cardwire acts on: what its
// webhook subscribes to, and what the catch-up lists by default.
func SubscribedEventTypes() []string {
	return []string{
		"acs_credential.issued", "acs_credential.reissued", "acs_credential.invalidated", "acs_credential.deleted",
		"access_method.issued", "access_method.reissued", "access_method.revoked", "access_method.deleted",
		"acs_encoder.removed",
	}
}

type kvManager interface {
	CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error)
}

// EnsureCatchup creates or updates CatchupBucket. Per-key TTLs are allowed
// (the lease expires when its holder stops renewing it); a marker of an
// expired key is kept a minute, long enough for watchers.
func EnsureCatchup(ctx context.Context, js kvManager, replicas int) (jetstream.KeyValue, error) {
	if replicas < 1 || replicas > 5 {
		return nil, fmt.Errorf("catch-up bucket: Replicas must be between 1 and 5, got %d", replicas)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: CatchupBucket, Description: "catch-up from Seam's event log: the lease and each workspace's checkpoint",
		History: 1, Storage: jetstream.FileStorage, Replicas: replicas, LimitMarkerTTL: time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("create or update bucket %s: %w", CatchupBucket, err)
	}
	return kv, nil
}
