package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/natstest"
	"github.com/cardwire/cardwire/internal/streams"
)

func TestPorts(t *testing.T) {
	defaults := ports{"NATS_PORT": 4222, "RECEIVER_PORT": 8080, "WORKER_API_PORT": 8081, "SIM_PORT": 8090,
		"RECEIVER_ADMIN_PORT": 9190, "WORKER_ADMIN_PORT": 9191}
	testCases := []struct {
		Name    string
		Env     map[string]string
		Want    ports
		WantErr string
	}{
		{"defaults: no admin port on Prometheus' 9090", nil, defaults, ""},
		{"PORT_BASE moves them all", map[string]string{"PORT_BASE": "18000"},
			ports{"NATS_PORT": 18022, "RECEIVER_PORT": 18080, "WORKER_API_PORT": 18081, "SIM_PORT": 18090,
				"RECEIVER_ADMIN_PORT": 18190, "WORKER_ADMIN_PORT": 18191}, ""},
		{"a variable wins over PORT_BASE", map[string]string{"PORT_BASE": "18000", "NATS_PORT": "14222"},
			ports{"NATS_PORT": 14222, "RECEIVER_PORT": 18080, "WORKER_API_PORT": 18081, "SIM_PORT": 18090,
				"RECEIVER_ADMIN_PORT": 18190, "WORKER_ADMIN_PORT": 18191}, ""},
		{"one variable", map[string]string{"WORKER_ADMIN_PORT": " 9291 "}, func() ports {
			p := ports{}
			for k, v := range defaults {
				p[k] = v
			}
			p["WORKER_ADMIN_PORT"] = 9291
			return p
		}(), ""},
		{"PORT_BASE not a number", map[string]string{"PORT_BASE": "eighteen"}, nil, `PORT_BASE must be a number from 1 to 65344`},
		{"PORT_BASE too high", map[string]string{"PORT_BASE": "65400"}, nil, `PORT_BASE must be a number`},
		{"a port out of range", map[string]string{"SIM_PORT": "70000"}, nil, `SIM_PORT must be a port number from 1 to 65535, got "70000"`},
		{"two parts on one port", map[string]string{"RECEIVER_PORT": "4222"}, nil, "NATS_PORT and RECEIVER_PORT are both 4222"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := portsOf(envOf(c.Env))
			if c.WantErr != "" {
				require.ErrorContains(t, err, c.WantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.Want, got)
			require.Equal(t, c.Env != nil, anyPortSet(envOf(c.Env)))
		})
	}
}

// freePort is a loopback port nothing listens on (now).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// portEnv gives every port variable a free port, then applies over.
func portEnv(t *testing.T, over map[string]string) map[string]string {
	t.Helper()
	env := map[string]string{}
	seen := map[int]bool{}
	for _, pv := range portVars {
		p := freePort(t)
		for seen[p] {
			p = freePort(t)
		}
		seen[p] = true
		env[pv.name] = strconv.Itoa(p)
	}
	for k, v := range over {
		env[k] = v
	}
	return env
}

func TestPortsCommand(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"ports"}, envOf(map[string]string{"PORT_BASE": "18000"}), &out))
	require.Equal(t, "NATS_PORT=18022\nRECEIVER_PORT=18080\nWORKER_API_PORT=18081\nSIM_PORT=18090\nRECEIVER_ADMIN_PORT=18190\nWORKER_ADMIN_PORT=18191\n", out.String(),
		"scripts/run.sh evaluates these lines")

	out.Reset()
	require.NoError(t, run(t.Context(), []string{"ports", "-h"}, noEnv, &out))
	for _, pv := range portVars {
		require.Contains(t, out.String(), pv.name)
	}

	env := portEnv(t, nil)
	require.NoError(t, run(t.Context(), []string{"ports", "-check"}, envOf(env), io.Discard), "free ports pass")

	// Somebody else's server on the NATS port, and one on the worker's
	// admin port: both named, nothing else.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyAll, err := net.Listen("tcp", "0.0.0.0:0") // all interfaces hold loopback too
	require.NoError(t, err)
	defer busyAll.Close()
	natsPort, adminPort := busy.Addr().(*net.TCPAddr).Port, busyAll.Addr().(*net.TCPAddr).Port
	env = portEnv(t, map[string]string{"NATS_PORT": strconv.Itoa(natsPort), "WORKER_ADMIN_PORT": strconv.Itoa(adminPort)})
	err = run(t.Context(), []string{"ports", "-check"}, envOf(env), io.Discard)
	require.ErrorContains(t, err, "nothing was started")
	require.ErrorContains(t, err, fmt.Sprintf("port %d (NATS_PORT, for NATS) is in use", natsPort))
	require.ErrorContains(t, err, fmt.Sprintf("port %d (WORKER_ADMIN_PORT, for the worker's metrics and health) is in use", adminPort))
	require.NotContains(t, err.Error(), "RECEIVER_PORT")
	require.ErrorContains(t, err, "make run PORT_BASE=18000")
}

// writeStack writes a stack.env for a stack run by pid.
func writeStack(t *testing.T, dir string, pid int, vars map[string]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "# written by the test\nSTACK_PID=%d\n", pid)
	for k, v := range vars {
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stack.env"), []byte(b.String()), 0o644))
}

// deadPid is the pid of a process that has exited.
func deadPid(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/sh", []string{"sh", "-c", "exit 0"}, &os.ProcAttr{})
	if err != nil {
		t.Skip("no /bin/sh:", err)
	}
	_, err = p.Wait()
	require.NoError(t, err)
	return p.Pid
}

func TestStackGetenv(t *testing.T) {
	dir := t.TempDir()
	running := map[string]string{"SEAM": "sim", "WORKSPACES_FILE": "elsewhere/ws.json", "NATS_PORT": "18022",
		"RECEIVER_PORT": "18080", "WORKER_API_PORT": "18081", "SIM_PORT": "18090", "RECEIVER_ADMIN_PORT": "18190", "WORKER_ADMIN_PORT": "18191"}
	caller := map[string]string{
		"CARDWIRE_DEV_STACK": dir, "NATS_URL": "nats://prod.example:4222", "SEAM_WEBHOOK_SECRET": "whsec_x",
		"WORKER_API_TOKEN": "tok", "WORKSPACES_FILE": "/etc/prod/workspaces.json", "LOG_LEVEL": "debug",
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	testCases := []struct {
		Name      string
		Stack     map[string]string // stack.env's variables; nil: none
		Pid       int
		Env       map[string]string
		Want      map[string]string
		WantNote  string
		WantError string
	}{
		{"no stack: the defaults and the simulator's file", nil, 0, caller, map[string]string{
			"WORKSPACES_FILE": filepath.Join(dir, "workspaces.json"), "SEAM": "sim", "NATS_URL": "nats://127.0.0.1:4222",
			"NATS_PORT": "", "SEAM_WEBHOOK_SECRET": "", "WORKER_API_TOKEN": "", "LOG_LEVEL": "debug",
		}, "note: WORKSPACES_FILE, NATS_URL, SEAM_WEBHOOK_SECRET, WORKER_API_TOKEN ignored: the make targets talk to the local stack, at nats://127.0.0.1:4222, with the secrets of " + filepath.Join(dir, "workspaces.json"), ""},
		{"no stack, PORT_BASE", nil, 0, with(caller, "PORT_BASE", "18000"), map[string]string{"NATS_URL": "nats://127.0.0.1:18022"}, "", ""},
		{"no stack, the sandbox", nil, 0, with(caller, "SEAM", "sandbox"), map[string]string{
			"WORKSPACES_FILE": filepath.Join(dir, "sandbox.json"), "SEAM": "sandbox",
		}, "", ""},
		{"no stack, another sandbox file", nil, 0, with(caller, "SEAM", "sandbox", "SANDBOX_WORKSPACES_FILE", "my.json"),
			map[string]string{"WORKSPACES_FILE": "my.json"}, "", ""},
		{"a running stack: its ports and file", running, os.Getpid(), caller, map[string]string{
			"WORKSPACES_FILE": "elsewhere/ws.json", "NATS_URL": "nats://127.0.0.1:18022", "WORKER_API_PORT": "18081",
		}, "", ""},
		{"a running stack in the sandbox", with(running, "SEAM", "sandbox"), os.Getpid(), with(caller, "SEAM", "sim"),
			map[string]string{"SEAM": "sandbox", "WORKSPACES_FILE": "elsewhere/ws.json"}, "", ""},
		{"a running stack, but PORT_BASE set: the variables win", running, os.Getpid(), with(caller, "PORT_BASE", "28000"),
			map[string]string{"NATS_URL": "nats://127.0.0.1:28022", "WORKER_API_PORT": "", "WORKSPACES_FILE": "elsewhere/ws.json"}, "", ""},
		{"a stack that is gone", running, deadPid(t), caller, map[string]string{
			"WORKSPACES_FILE": filepath.Join(dir, "workspaces.json"), "NATS_URL": "nats://127.0.0.1:4222",
		}, "", ""},
		{"SEAM wrong", nil, 0, with(caller, "SEAM", "prod"), nil, "", `SEAM must be sim (the simulator, the default) or sandbox, got "prod"`},
		{"a port wrong", nil, 0, with(caller, "NATS_PORT", "x"), nil, "", "NATS_PORT must be a port number"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			_ = os.Remove(filepath.Join(dir, "stack.env"))
			if c.Stack != nil {
				writeStack(t, dir, c.Pid, c.Stack)
			}
			var notes bytes.Buffer
			env, err := stackGetenv(envOf(c.Env), &notes)
			if c.WantError != "" {
				require.ErrorContains(t, err, c.WantError)
				return
			}
			require.NoError(t, err)
			for k, v := range c.Want {
				require.Equal(t, v, env(k), k)
			}
			if c.WantNote != "" {
				require.Contains(t, notes.String(), c.WantNote)
				require.NotContains(t, notes.String(), "whsec_x", "never a secret")
			}
		})
	}
}

// As make send runs it: with an exported SEAM_WEBHOOK_SECRET (the README's
// next step after registering a webhook with Seam), the event is still
// signed with the stack's secret, sent to the running stack's receiver
// port, and a note says the variable was ignored.
func TestMakeSendUsesTheStack(t *testing.T) {
	path, c := devFile(t)
	w, _ := c.Workspace(auroraID)
	h := newHooks(t, map[string]string{auroraID: w.WebhookSecrets[0].Reveal()})
	u, err := url.Parse(h.srv.URL)
	require.NoError(t, err)
	dir := t.TempDir()
	writeStack(t, dir, os.Getpid(), map[string]string{"SEAM": "sim", "WORKSPACES_FILE": path, "RECEIVER_PORT": u.Port()})

	var notes bytes.Buffer
	stderr = &notes
	t.Cleanup(func() { stderr = os.Stderr })
	env := map[string]string{"CARDWIRE_DEV_STACK": dir, "SEAM_WEBHOOK_SECRET": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"}
	require.NoError(t, run(t.Context(), []string{"send", "-credential", "card-1"}, envOf(env), io.Discard))
	require.Equal(t, hook{workspace: auroraID, verified: []string{auroraID}}, <-h.got)
	require.Contains(t, notes.String(), "note: SEAM_WEBHOOK_SECRET ignored: the make targets talk to the local stack")
	require.Contains(t, notes.String(), "with the secrets of "+path)

	// Without the make targets' stack, the two together are refused, as
	// the receiver refuses them.
	err = run(t.Context(), []string{"send", "-url", h.srv.URL + "/webhooks/seam"},
		envOf(map[string]string{"WORKSPACES_FILE": path, "SEAM_WEBHOOK_SECRET": "whsec_c2VjcmV0c2VjcmV0c2VjcmV0"}), io.Discard)
	require.ErrorContains(t, err, "set one of WORKSPACES_FILE and SEAM_WEBHOOK_SECRET")
}

func TestDemosNeedTheSimulator(t *testing.T) {
	dir := t.TempDir()
	for _, cmd := range []string{"demo", "demo-outage"} {
		err := run(t.Context(), []string{cmd}, envOf(map[string]string{"CARDWIRE_DEV_STACK": dir, "SEAM": "sandbox"}), io.Discard)
		require.ErrorContains(t, err, "make "+cmd+" needs the Seam simulator")
	}
}

func TestRegisterConfirmTimeout(t *testing.T) {
	bodies := make(chan map[string]string, 2)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b map[string]string
		_ = json.NewDecoder(r.Body).Decode(&b)
		bodies <- b
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"status":"pending"}`))
	}))
	t.Cleanup(api.Close)
	u, err := url.Parse(api.URL)
	require.NoError(t, err)
	env := envOf(map[string]string{"WORKER_API_PORT": u.Port()})
	require.NoError(t, run(t.Context(), []string{"register", "-credential", "card-1", "-confirm-timeout", "2m"}, env, io.Discard))
	b := <-bodies
	require.Equal(t, "2m", b["confirm_timeout"])
	require.NotEmpty(t, b["action_attempt_id"], "a made-up attempt: the worker does not start the encode")
	require.NoError(t, run(t.Context(), []string{"register", "-credential", "card-1"}, env, io.Discard))
	_, set := (<-bodies)["confirm_timeout"]
	require.False(t, set, "the worker's default")
}

// syncBuffer is a bytes.Buffer safe for the tail's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// make tail keeps printing after NATS was away for longer than nats.go's
// default reconnect budget (60 attempts), and resumes after the last
// message it printed.
func TestTailOutlivesNATS(t *testing.T) {
	srv := natstest.RunJetStream(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	require.NoError(t, streams.EnsureEventsStream(t.Context(), js, streams.DefaultEventsStreamOptions()))
	publish := func(id string) {
		t.Helper()
		nc, err := nats.Connect(srv.ClientURL())
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		_, err = js.Publish(t.Context(), "seam.events.ws-1.acs_credential.issued", []byte(`{"event_id":"`+id+`"}`))
		require.NoError(t, err)
	}
	publish("old") // before the tail: not printed

	tailReconnect = []nats.Option{nats.ReconnectWait(5 * time.Millisecond), nats.ReconnectJitter(0, 0)}
	t.Cleanup(func() { tailReconnect = nil })
	var out syncBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"tail", "-nats", srv.ClientURL()}, noEnv, &out)
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "watching") }, 10*time.Second, 10*time.Millisecond)
	publish("first")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"first"`) }, 10*time.Second, 10*time.Millisecond)

	srv.Stop()
	time.Sleep(1500 * time.Millisecond) // well over 60 attempts, 5 ms apart
	srv.Restart(t)
	publish("second")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"second"`) }, 20*time.Second, 50*time.Millisecond,
		"tail resumes after the outage; got:\n%s", out.String())
	cancel()
	require.NoError(t, <-done)
	require.NotContains(t, out.String(), `"old"`)
	require.Equal(t, 1, strings.Count(out.String(), `"first"`), "nothing printed twice after the reset")
}
