package lifecycle

import (
	"os"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionPrintsTheStampedVersionAndCommit(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "0.6.0", "1a2b3c4d5e6f"
	var out strings.Builder
	exit, err := ParseArgs("worker", []string{"-version"}, &out, nil)
	require.True(t, exit)
	require.NoError(t, err)
	require.Equal(t, "worker 0.6.0 (commit 1a2b3c4d5e6f)\n", out.String())
}

func TestCommitFromBuildInfo(t *testing.T) {
	info := func(settings ...string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			bi := &debug.BuildInfo{}
			for i := 0; i+1 < len(settings); i += 2 {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
			}
			return bi, true
		}
	}
	testCases := []struct {
		Name string
		Read func() (*debug.BuildInfo, bool)
		Want string
	}{
		{"no build info", func() (*debug.BuildInfo, bool) { return nil, false }, "unknown"},
		{"no vcs stamp", info("-trimpath", "true"), "unknown"},
		{"clean checkout", info("vcs.revision", "b9208f8e0c1d2e3f4a5b6c7d8e9f000102030405", "vcs.modified", "false"), "b9208f8e0c1d"},
		{"modified checkout", info("vcs.revision", "b9208f8e0c1d2e3f4a5b6c7d8e9f000102030405", "vcs.modified", "true"), "b9208f8e0c1d-dirty"},
	}
	for _, c := range testCases {
		t.Run(c.Name, func(t *testing.T) {
			require.Equal(t, c.Want, buildCommit(c.Read))
		})
	}
}

// TestBuildsStampVersionAndCommit: make build, the Dockerfile and ko's
// .ko.yaml (make image) set both variables by their full names (a misspelt
// -X is silently ignored), and make takes the version from the CHANGELOG's
// newest entry.
func TestBuildsStampVersionAndCommit(t *testing.T) {
	stamp := regexp.MustCompile(`-X github\.com/cardwire/cardwire/internal/lifecycle\.(\w+)=`)
	for _, file := range []string{"../../Makefile", "../../Dockerfile", "../../.ko.yaml"} {
		t.Run(file, func(t *testing.T) {
			src, err := os.ReadFile(file)
			require.NoError(t, err)
			var set []string
			for _, m := range stamp.FindAllStringSubmatch(string(src), -1) {
				if !slices.Contains(set, m[1]) {
					set = append(set, m[1])
				}
			}
			slices.Sort(set)
			require.Equal(t, []string{"commit", "version"}, set, "the variables %s stamps", file)
		})
	}
	makefile, err := os.ReadFile("../../Makefile")
	require.NoError(t, err)
	require.Regexp(t, `(?m)^VERSION\s*\?=.*CHANGELOG\.md`, string(makefile), "make's VERSION comes from the CHANGELOG")
	require.Regexp(t, `(?m)^COMMIT\s*\?=.*git describe`, string(makefile), "make's COMMIT comes from git")
}

// TestImagesShareTheBase: make image (ko) and make image-docker build on the
// same base.
func TestImagesShareTheBase(t *testing.T) {
	dockerfile, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(string(dockerfile), -1)
	require.NotEmpty(t, froms)
	ko, err := os.ReadFile("../../.ko.yaml")
	require.NoError(t, err)
	base := regexp.MustCompile(`(?m)^defaultBaseImage:\s*(\S+)\s*$`).FindStringSubmatch(string(ko))
	require.NotNil(t, base, ".ko.yaml names a defaultBaseImage")
	require.Equal(t, froms[len(froms)-1][1], base[1], "the Dockerfile's final FROM and .ko.yaml's defaultBaseImage")
}
