package e2e_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cardwire/cardwire/internal/encoding"
)

// BenchmarkWebhookToOutcome offers signed webhooks to the receiver at a
// steady rate (200/s) for encodings registered beforehand, and reports the
// latency from the receiver's 204 to the outcome message reaching a
// subscriber: p50 and p99 in milliseconds. It runs on one server (make run)
// and on a 3-node cluster with 3 replicas (production), where each PubAck
// and KV write waits for a quorum.
func BenchmarkWebhookToOutcome(b *testing.B) {
	b.Run("one-node", func(b *testing.B) { benchWebhookToOutcome(b, newStack(b)) })
	b.Run("three-nodes-R3", func(b *testing.B) { benchWebhookToOutcome(b, newClusterStack(b)) })
}

func benchWebhookToOutcome(b *testing.B, s *stack) {
	const rate = 200
	n := max(b.N, 50)
	creds := make([]string, n)
	ids := make(map[string]int, n)
	for i := range creds {
		creds[i] = uuid.NewString()
		ids[s.register(b, creds[i])] = i
	}

	var mu sync.Mutex
	sent := make([]time.Time, n)
	answered := make([]time.Time, n)
	arrived := make([]time.Time, n)
	done := make(chan struct{})
	count := 0
	cc, err := s.outcomes.Consume(func(m jetstream.Msg) {
		var rec encoding.Record
		_ = json.Unmarshal(m.Data(), &rec)
		mu.Lock()
		defer mu.Unlock()
		if i, ok := ids[rec.EncodingID]; ok && arrived[i].IsZero() {
			arrived[i] = time.Now()
			if count++; count == n {
				close(done)
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	b.ResetTimer()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	var wg sync.WaitGroup
	for i := range n {
		<-tick.C
		sent[i] = time.Now()
		wg.Go(func() {
			status, err := s.webhook(creds[i])
			if err != nil || status != http.StatusNoContent {
				b.Errorf("webhook %d: %d %v", i, status, err)
				return
			}
			mu.Lock()
			answered[i] = time.Now()
			mu.Unlock()
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		b.Fatalf("only %d of %d outcomes arrived", count, n)
	}
	b.StopTimer()

	lat := make([]float64, 0, n)
	whole := make([]float64, 0, n)
	for i := range n {
		// An outcome can beat the 204 to the subscriber; count that as 0.
		lat = append(lat, max(arrived[i].Sub(answered[i]).Seconds()*1000, 0))
		whole = append(whole, arrived[i].Sub(sent[i]).Seconds()*1000)
	}
	slices.Sort(lat)
	slices.Sort(whole)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
	b.ReportMetric(whole[len(whole)/2], "p50-send-to-outcome-ms")
	b.ReportMetric(whole[len(whole)*99/100], "p99-send-to-outcome-ms")
	b.ReportMetric(0, "ns/op")
}
