package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/broker"
	"github.com/cardwire/cardwire/internal/natstest"
)

func TestCheckURLs(t *testing.T) {
	testCases := []struct {
		URL  string
		Want string // "" when valid
	}{
		{URL: "nats://127.0.0.1:4222"},
		{URL: "nats://nats:4222, nats://nats-1.nats:4222 ,nats://nats-2.nats:4222"},
		{URL: "tls://user:pass@nats.example.com:4222"},
		{URL: "NATS://nats"},
		{URL: "ws://127.0.0.1:8080,wss://nats.example.com"},
		{URL: "nats://[::1]:4222"},
		{URL: "garbage", Want: `got "garbage"`},
		{URL: "", Want: "got nothing"},
		{URL: "127.0.0.1:4222", Want: `got "127.0.0.1:4222"`},
		{URL: "nats//127.0.0.1:4222", Want: `got "nats//127.0.0.1:4222"`},
		{URL: "https://token@nats.example.com", Want: `got scheme https:// in "https://nats.example.com"`},
		{URL: "nats://", Want: `got no host in "nats://"`},
		{URL: "nats://nats:99999", Want: `got port "99999"`},
		{URL: "nats://nats:4222,", Want: "an empty entry"},
		{URL: "nats://a:4222,ws://b:8080", Want: "ws:// and wss:// URLs cannot be mixed"},
		{URL: "nats://us%er:p%ss@nats:4222", Want: `got "…@nats:4222"`},
	}
	for _, c := range testCases {
		t.Run(c.URL, func(t *testing.T) {
			err := broker.CheckURLs(c.URL)
			if c.Want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, c.Want)
			if !strings.Contains(c.Want, "mixed") {
				require.ErrorContains(t, err, "want a comma-separated list of nats://, tls://, ws:// or wss:// URLs")
			}
			for _, secret := range []string{"pass", "token", "p%ss"} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestRedactURLs(t *testing.T) {
	require.Equal(t, "nats://a:4222,tls://b:4222,nats://c", broker.RedactURLs("nats://user:pw@a:4222, tls://s3cr3t-token@b:4222,nats://c"))
}

func TestCheckJetStream(t *testing.T) {
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go plain.Start()
	require.True(t, plain.ReadyForConnections(10*time.Second))
	t.Cleanup(plain.Shutdown)
	js := natstest.RunJetStream(t)

	testCases := []struct {
		Name string
		URL  string
		Want string
	}{
		{"JetStream", js.ClientURL(), ""},
		{"no JetStream", plain.ClientURL(), "no JetStream on the NATS server at " + strings.TrimSuffix(plain.ClientURL(), "/") + ": start nats-server with -js"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			nc, err := nats.Connect(c.URL)
			require.NoError(t, err)
			t.Cleanup(nc.Close)
			jsc, err := jetstream.New(nc)
			require.NoError(t, err)
			err = broker.CheckJetStream(t.Context(), nc, jsc)
			if c.Want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, broker.ErrNoJetStream)
			require.EqualError(t, err, c.Want+" (or a jetstream {} block in its configuration)")
		})
	}
}
