package lifecycle_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/lifecycle"
	"github.com/cardwire/cardwire/internal/logtest"
)

// With CancelOnShutdown, a request that lasts until its context ends (a
// long poll, an event stream) does not hold Shutdown for its whole budget.
func TestCancelOnShutdownEndsLongRequests(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	})
	o := lifecycle.DefaultServerOptions()
	o.CancelOnShutdown = true
	logs := logtest.NewSink()
	srv, _, err := lifecycle.Serve("127.0.0.1:0", h, o, zerolog.New(logs))
	require.NoError(t, err)
	addr := logs.Wait(t, "listening", "")["addr"].(string)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx), "Shutdown returned because the request ended, not because its budget ran out")
}

func TestParseArgs(t *testing.T) {
	variables := func(w io.Writer) error {
		_, err := io.WriteString(w, "  NATS_URL  nats://127.0.0.1:4222  NATS servers\n")
		return err
	}
	testCases := []struct {
		Name    string
		Args    []string
		Exit    bool
		WantErr string
		Out     string
	}{
		{Name: "none", Args: nil},
		// The commit comes from the build info: "unknown" under go test.
		{Name: "version", Args: []string{"-version"}, Exit: true, Out: `^svc dev \(commit \S+\)\n$`},
		{Name: "help lists the variables", Args: []string{"-h"}, Exit: true, Out: `(?s)^usage: svc \[-h\] \[-version\].*environment variable.*  NATS_URL  nats://127.0.0.1:4222  NATS servers\n$`},
		{Name: "unknown flag", Args: []string{"-port=1"}, Exit: true, WantErr: "flag provided but not defined: -port"},
		{Name: "stray argument", Args: []string{"serve"}, Exit: true, WantErr: `unexpected arguments ["serve"]`},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out strings.Builder
			exit, err := lifecycle.ParseArgs("svc", c.Args, &out, variables)
			require.Equal(t, c.Exit, exit)
			if c.WantErr != "" {
				require.ErrorContains(t, err, c.WantErr)
				return
			}
			require.NoError(t, err)
			require.Regexp(t, c.Out, out.String())
		})
	}
}
