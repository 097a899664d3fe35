package streams_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

// BenchmarkDuplicateWindowMemory is what SEAM_EVENTS_DUPLICATE_WINDOW
// costs nats-server: the heap its dedupe map takes per message id it
// keeps (evt:<uuid>), measured as the heap growth of a server storing
// b.N events with ids less that of one storing them without (same
// bodies, subjects and other headers), both embedded. Reports bytes/id; multiply by
// the events per window to size a window.
func BenchmarkDuplicateWindowMemory(b *testing.B) {
	heapAfter := func(withIDs bool) uint64 {
		srv := natstest.RunJetStream(b)
		_, js := natstest.Connect(b, srv.ClientURL())
		o := streams.DefaultEventsStreamOptions()
		o.Duplicates = time.Hour
		if err := streams.EnsureEventsStream(b.Context(), js, o); err != nil {
			b.Fatal(err)
		}
		body := []byte(`{"event_type":"acs_credential.issued"}`)
		var futures []jetstream.PubAckFuture
		for i := range b.N {
			msg, err := streams.EventMsg(body, streams.Event{EventID: uuid.NewString(), EventType: "acs_credential.issued", WorkspaceID: "ws1"})
			if err != nil {
				b.Fatal(err)
			}
			if !withIDs {
				msg.Header.Del(jetstream.MsgIDHeader)
			}
			f, err := js.PublishMsgAsync(msg)
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
			if len(futures) == 4096 || i == b.N-1 {
				for _, f := range futures {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Fatal(err)
					}
				}
				futures = futures[:0]
			}
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Each server stays up until the end: heapAfter's growth is that
	// server's whole cost.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	without := heapAfter(false)
	with := heapAfter(true)
	costWithout, costWith := int64(without)-int64(base), int64(with)-int64(without)
	b.ReportMetric(float64(costWith-costWithout)/float64(b.N), "bytes/id")
}
