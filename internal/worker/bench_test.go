package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
	cwworker "github.com/cardwire/cardwire/internal/worker"
)

// BenchmarkSettle is the workers' throughput: b.N encodings are
// registered and b.N matching events are waiting in SEAM_EVENTS; the timer
// covers one worker, or two sharing the consumer, consuming them all (each
// an attribution read, a compare-and-set of the record, an ack) until the
// outbox has published every issued outcome. Workers handle
// WORKER_CONCURRENCY events at once, the default. NATS runs in a process
// of its own, as in production (it still shares the machine's cores).
//
// seen=false starts the workers after the registrations (a worker coming
// up to a backlog: each settle reads its record); seen=true has them up
// since before (as in steady running: each settle starts its
// compare-and-set from the revision the worker's feed saw), with the
// intake consumer paused while the events are stored.
//
// Reports events/s, the CPU time per event of the NATS process and of
// this one (the workers, and the benchmark's own reader of the outcomes),
// and the cores the two kept busy.
func BenchmarkSettle(b *testing.B) {
	for _, seen := range []bool{false, true} {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("seen=%t/workers=%d", seen, workers), func(b *testing.B) {
				benchSettle(b, seen, workers)
			})
		}
	}
}

func benchSettle(b *testing.B, seen bool, workers int) {
	srv := natstest.RunJetStreamProcess(b)
	e := newEnvAt(b, srv.URL)
	cfg := workerConfig{concurrency: cwworker.DefaultOptions().Concurrency}
	var running []*worker
	startWorkers := func() {
		for range workers {
			running = append(running, e.startWorker(b, cfg))
		}
	}
	registrar := e.startWorker(b, workerConfig{})
	if seen {
		startWorkers()
		if _, err := e.js.PauseConsumer(b.Context(), streams.EventsStream, streams.WorkerConsumer, time.Now().Add(time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	creds := make([]string, b.N)
	for i := range b.N {
		creds[i] = uuid.NewString()
		registrar.register(b, creds[i], "", uuid.NewString())
	}
	// The pending outcomes are out before the clock starts, as they
	// would be long before a card is placed.
	e.outcomes.waitCount(b, encoding.StatusPending, b.N)
	if err := registrar.w.Stop(b.Context()); err != nil {
		b.Fatal(err)
	}
	for _, w := range running {
		for w.counter("cardwire_worker_encodings_pending") < float64(b.N) {
			time.Sleep(10 * time.Millisecond) // polling a gauge: nothing to await
		}
	}
	now := time.Now()
	for _, cred := range creds {
		if _, err := e.trySeamEvent("acs_credential.issued", ws, cred, now.Add(time.Second), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start, natsCPU, selfCPU := time.Now(), srv.CPU(b), natstest.SelfCPU(b)
	if seen {
		if _, err := e.js.ResumeConsumer(b.Context(), streams.EventsStream, streams.WorkerConsumer); err != nil {
			b.Fatal(err)
		}
	} else {
		startWorkers()
	}
	e.outcomes.waitCount(b, encoding.StatusIssued, b.N)
	elapsed := time.Since(start)
	natsUsed, selfUsed := srv.CPU(b)-natsCPU, natstest.SelfCPU(b)-selfCPU
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(b.N) }
	b.ReportMetric(perEvent(natsUsed), "nats-cpu-µs/event")
	b.ReportMetric(perEvent(selfUsed), "worker-cpu-µs/event")
	// How many of the machine's cores the two processes kept busy: near
	// runtime.NumCPU(), a second worker has nothing to run on.
	b.ReportMetric((natsUsed+selfUsed).Seconds()/elapsed.Seconds(), "cores-busy")
}
