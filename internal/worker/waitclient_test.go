package worker_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/encoding"
	"github.com/cardwire/cardwire/internal/natstest"
)

// waitClientEnv, when set, makes the test binary a long-poll client
// instead of running tests: BenchmarkManyWaitsRSS starts it in a process
// of its own, so that the worker's RSS holds only the server's side of
// each wait.
const waitClientEnv = "CARDWIRE_WAIT_CLIENT"

func TestMain(m *testing.M) {
	natstest.ServeIfAsked()
	if url := os.Getenv(waitClientEnv); url != "" {
		os.Exit(waitClient(url, os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// waitClient reads encoding ids from in, one per line, opens a ?wait=
// long poll for each at once, writes "open" once all are sent, then, per
// answer, the milliseconds from the encoding's state change to the answer.
func waitClient(base string, in io.Reader, out io.Writer) int {
	var ids []string
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if id := strings.TrimSpace(sc.Text()); id != "" {
			ids = append(ids, id)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: len(ids)}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := 0
	for _, id := range ids {
		wg.Go(func() {
			resp, err := client.Get(base + "/v1/encodings/" + id + "?wait=1m")
			answered := time.Now()
			var rec encoding.Record
			if err == nil {
				err = json.NewDecoder(resp.Body).Decode(&rec)
				resp.Body.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil || rec.ResolvedAt == nil {
				failed++
				return
			}
			fmt.Fprintf(out, "%d\n", answered.Sub(*rec.ResolvedAt).Microseconds())
		})
	}
	fmt.Fprintln(out, "open")
	wg.Wait()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "%d waits failed\n", failed)
		return 1
	}
	return 0
}

// The benchmarks that measure the worker's own memory run NATS in a
// process of its own: that server serves a worker as the embedded one does.
func TestNATSInAProcessOfItsOwn(t *testing.T) {
	e := newEnvAt(t, natstest.RunJetStreamProcess(t).URL)
	w := e.startWorker(t, workerConfig{})
	cred := uuid.NewString()
	rec := w.register(t, cred, "", uuid.NewString())
	e.seamEvent(t, "acs_credential.issued", ws, cred, time.Now(), "")
	require.Equal(t, encoding.StatusIssued, w.waitFinal(t, rec.EncodingID).Status)
}
