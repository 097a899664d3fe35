package lifecycle_test

import (
	"context"
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
	testCases := []struct {
		Name    string
		Args    []string
		Exit    bool
		WantErr bool
		Out     string
	}{
		{Name: "none", Args: nil},
		{Name: "version", Args: []string{"-version"}, Exit: true, Out: "svc dev\n"},
		{Name: "help", Args: []string{"-h"}, Exit: true, Out: "usage: svc"},
		{Name: "unknown flag", Args: []string{"-port=1"}, Exit: true, WantErr: true},
		{Name: "stray argument", Args: []string{"serve"}, Exit: true, WantErr: true},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			var out strings.Builder
			exit, err := lifecycle.ParseArgs("svc", c.Args, &out)
			require.Equal(t, c.Exit, exit)
			require.Equal(t, c.WantErr, err != nil, "err %v", err)
			require.Contains(t, out.String(), c.Out)
		})
	}
}
