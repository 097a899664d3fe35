package config_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/cardwire/cardwire/internal/config"
)

func TestSecretIsRedactedEverywhere(t *testing.T) {
	const value = "whsec_c2VjcmV0LXZhbHVl"
	cfg := struct {
		URL    string
		Secret config.Secret
		List   []config.Secret
	}{"nats://x", config.Secret(value), []config.Secret{config.Secret(value)}}

	js, err := json.Marshal(cfg)
	require.NoError(t, err)
	var logged []byte
	log := zerolog.New(zerologWriter(func(p []byte) { logged = append(logged, p...) }))
	log.Info().Interface("cfg", cfg).Stringer("s", cfg.Secret).Msg("config")

	for name, out := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"String": cfg.Secret.String(), "json": string(js), "zerolog": string(logged),
	} {
		require.NotContains(t, out, "c2VjcmV0", name)
		require.Regexp(t, `<secret>|\\u003csecret\\u003e`, out, name)
	}
	require.Equal(t, value, cfg.Secret.Reveal())
}

type zerologWriter func([]byte)

func (w zerologWriter) Write(p []byte) (int, error) { w(p); return len(p), nil }

func TestSecrets(t *testing.T) {
	files := map[string]string{"/run/secrets/two": "whsec_a\nwhsec_b\n", "/run/secrets/comma": " whsec_a , whsec_b ,"}
	read := func(p string) ([]byte, error) {
		if v, ok := files[p]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
	testCases := []struct {
		Name    string
		Env     map[string]string
		Want    []string
		WantErr string
	}{
		{Name: "unset", Env: map[string]string{}},
		{Name: "one value", Env: map[string]string{"S": "whsec_a"}, Want: []string{"whsec_a"}},
		{Name: "comma separated", Env: map[string]string{"S": "whsec_a,whsec_b"}, Want: []string{"whsec_a", "whsec_b"}},
		{Name: "file, one per line", Env: map[string]string{"S_FILE": "/run/secrets/two"}, Want: []string{"whsec_a", "whsec_b"}},
		{Name: "file, comma separated", Env: map[string]string{"S_FILE": "/run/secrets/comma"}, Want: []string{"whsec_a", "whsec_b"}},
		{Name: "both", Env: map[string]string{"S": "whsec_a", "S_FILE": "/run/secrets/two"}, WantErr: "at most one of S and S_FILE may be set"},
		{Name: "missing file", Env: map[string]string{"S_FILE": "/nope"}, WantErr: "S_FILE: file does not exist"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			env := &config.Env{Getenv: func(k string) string { return c.Env[k] }, ReadFile: read}
			got := env.Secrets("S")
			if c.WantErr != "" {
				require.EqualError(t, env.Err(), c.WantErr)
				return
			}
			require.NoError(t, env.Err())
			var plain []string
			for _, s := range got {
				plain = append(plain, s.Reveal())
			}
			require.Equal(t, c.Want, plain)
		})
	}
}

func TestEnvCollectsEveryError(t *testing.T) {
	env := &config.Env{Getenv: func(k string) string {
		return map[string]string{"D": "5", "N": "many", "B": "perhaps"}[k]
	}}
	require.Equal(t, 7, env.Int("MISSING", 7))
	env.Duration("D", 0)
	env.Int("N", 0)
	env.Bool("B", false)
	err := env.Err()
	require.ErrorContains(t, err, "D: want a positive Go duration")
	require.ErrorContains(t, err, "N: want a positive integer")
	require.ErrorContains(t, err, "B: want true or false")
}
