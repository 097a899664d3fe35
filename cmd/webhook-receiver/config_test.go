package main

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/clitest"
	"github.com/cardwire/cardwire/internal/config"
	"github.com/cardwire/cardwire/internal/logtest"
)

// TestVariablesAreWhatLoadConfigReads: the table -h prints and the README
// is held to is the list of variables loadConfig (and the logger) read,
// with the defaults they use.
func TestVariablesAreWhatLoadConfigReads(t *testing.T) {
	testCases := []struct {
		Name string
		Env  map[string]string
	}{
		{"nothing set", nil},
		{"secrets from a file", map[string]string{"SEAM_WEBHOOK_SECRET_FILE": "/run/secrets/webhook-secret"}},
		{"workspaces file", map[string]string{"WORKSPACES_FILE": "/etc/cardwire/workspaces.yaml"}},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := &config.Env{
				Getenv:   func(k string) string { return c.Env[k] },
				ReadFile: func(string) ([]byte, error) { return []byte("whsec_c2VjcmV0"), nil },
			}
			env.Logger(io.Discard)
			loadConfig(env)
			require.NoError(t, env.Err())
			require.NoError(t, variables.Check(env.Reads(), true))
		})
	}
}

func TestArgs(t *testing.T) { clitest.Args(t, "webhook-receiver", variables, run) }

// TestREADMEConfigurationTable: README's configuration table lists every
// variable of the receiver, with its default, and none it does not read.
func TestREADMEConfigurationTable(t *testing.T) {
	clitest.READMETable(t, "../../README.md", "webhook-receiver", variables)
}

func TestNATSURLMustBeNATSURLs(t *testing.T) {
	const want = "NATS_URL: want a comma-separated list of nats://, tls://, ws:// or wss:// URLs such as nats://127.0.0.1:4222, got "
	testCases := []struct {
		Name string
		URL  string
		Want string
	}{
		// The forms a URL can take wrong are internal/broker's table; here,
		// that the binary refuses at start, names the variable, and never
		// repeats a credential.
		{"a word", "garbage", want + `"garbage"`},
		{"http, with credentials", "http://cardwire:hunter2@nats:4222", want + `scheme http:// in "http://nats:4222"`},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := map[string]string{"NATS_URL": c.URL, "SEAM_WEBHOOK_SECRET": newSecret(t)}
			err := run(t.Context(), nil, func(k string) string { return env[k] }, io.Discard)
			require.ErrorContains(t, err, c.Want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

// TestUnreachableNATSIsLoggedWithItsURL: while no server answers, the
// log says which one is tried, without its credentials.
func TestUnreachableNATSIsLoggedWithItsURL(t *testing.T) {
	addr := closedAddr(t)
	logs, _ := runInBackground(t, map[string]string{"NATS_URL": "nats://cardwire:hunter2@" + addr, "SEAM_WEBHOOK_SECRET": newSecret(t)})
	require.Equal(t, "nats://"+addr, logs.Wait(t, "no NATS server reachable yet; retrying", "nats")["servers"])
	require.Equal(t, "nats://"+addr, logs.Wait(t, "reconnect failed; retrying", "nats")["servers"])
	require.NotContains(t, logs.String(), "hunter2")
}

// TestNATSWithoutJetStreamIsNamed: a server started without -js is named
// as such, not as "no responders".
func TestNATSWithoutJetStreamIsNamed(t *testing.T) {
	url := runPlainNATS(t)
	logs, stop := runInBackground(t, map[string]string{"NATS_URL": url, "SEAM_WEBHOOK_SECRET": newSecret(t)})
	line := logs.Wait(t, "NATS has no JetStream; retrying", "")
	require.Equal(t, "no JetStream on the NATS server at "+url+": start nats-server with -js (or a jetstream {} block in its configuration)", line["error"])
	require.NotContains(t, logs.String(), "no responders")

	// Durations in the log carry their unit.
	stop()
	require.Regexp(t, `^[0-9.]+(ns|µs|ms|s)$`, logs.Wait(t, "stopped", "lifecycle")["took"])
}

// runInBackground runs the receiver with env on loopback ports until stop
// or the end of the test, and returns its log.
func runInBackground(t *testing.T, env map[string]string) (logs *logtest.Sink, stop func()) {
	t.Helper()
	env["ADMIN_ADDR"], env["RECEIVER_ADDR"] = "127.0.0.1:0", "127.0.0.1:0"
	logs = logtest.NewSink()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, logs) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return logs, stop
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// runPlainNATS starts a NATS server without JetStream.
func runPlainNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go s.Start()
	require.True(t, s.ReadyForConnections(10*time.Second))
	t.Cleanup(s.Shutdown)
	return strings.TrimSuffix(s.ClientURL(), "/")
}
