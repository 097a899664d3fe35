package seam

import "strings"

// IsPersonalAccessToken reports whether key is a personal access token
// (seam_at…), which reaches several workspaces and so must name one in
// the seam-workspace header, rather than an API key (seam_…), which is
// scoped to its workspace. The prefixes are the ones Seam's SDKs tell
// the two apart by; anything not starting with seam_ is taken for a
// token too, as a console session is.
func IsPersonalAccessToken(key string) bool {
	return strings.HasPrefix(key, "seam_at") || !strings.HasPrefix(key, "seam_")
}
