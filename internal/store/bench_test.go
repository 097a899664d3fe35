package store_test

import (
	"fmt"
	"testing"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/store"
)

// BenchmarkRemovePending is the cost of taking one settled encoding out of
// the pending index while 50,000 others stay pending: by its exact entry
// (settling, a deadline) and by a wildcard over the request time (the
// repair of a registration that never stored its record), which makes the
// server walk every pending entry of the workspace.
func BenchmarkRemovePending(b *testing.B) {
	const others = 50000
	for _, exact := range []bool{true, false} {
		b.Run(fmt.Sprintf("exact=%t", exact), func(b *testing.B) {
			s := newStore(b)
			ctx := b.Context()
			for i := range others {
				if err := s.AddPending(ctx, pending(fmt.Sprint("keep", i))); err != nil {
					b.Fatal(err)
				}
			}
			recs := make([]encoding.Record, b.N)
			for i := range b.N {
				recs[i] = pending(fmt.Sprint("done", i))
				if err := s.AddPending(ctx, recs[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := range b.N {
				p := store.PendingOf(recs[i])
				if !exact {
					p = store.Pending{WorkspaceID: p.WorkspaceID, EncodingID: p.EncodingID}
				}
				if err := s.RemovePending(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
