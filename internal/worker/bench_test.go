package worker_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cardwire/cardwire/internal/encoding"
)

// BenchmarkSettle is the worker's throughput: b.N encodings are registered
// and b.N matching events are waiting in SEAM_EVENTS; the timer covers one
// worker (concurrency 4) consuming them all, each with its KV
// compare-and-set and outcome publish. Reports events/s.
func BenchmarkSettle(b *testing.B) {
	e := newEnv(b)
	registrar := e.startWorker(b, workerConfig{})
	if err := registrar.w.Stop(b.Context()); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for range b.N {
		cred := uuid.NewString()
		registrar.register(b, cred, "", uuid.NewString())
		if _, err := e.trySeamEvent("acs_credential.issued", ws, cred, now.Add(time.Second), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	e.startWorker(b, workerConfig{})
	e.outcomes.waitCount(b, encoding.StatusIssued, b.N)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
