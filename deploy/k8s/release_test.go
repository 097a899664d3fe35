package k8s_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestProductionImagesCarryTheReleaseVersion: the production overlays run
// the images of the version the CHANGELOG's newest entry names (the one
// make build and make image stamp), and name them with newName, the line an
// operator points at their registry. The dev overlay runs what make image
// built locally.
func TestProductionImagesCarryTheReleaseVersion(t *testing.T) {
	version := changelogVersion(t)
	testCases := []struct {
		Overlay string
		Tag     string
	}{
		{"overlays/production", version},
		{"overlays/existing-nats", version},
	}
	for _, c := range testCases {
		t.Run(c.Overlay, func(t *testing.T) {
			r := render(t, c.Overlay)
			for _, b := range binaries {
				image := r.Deployments[b.Deployment].Spec.Template.Spec.Containers[0].Image
				if want := "/" + b.Deployment + ":" + c.Tag; !strings.HasSuffix(image, want) {
					t.Errorf("%s runs image %s, want <your registry>%s (newTag: the CHANGELOG's newest version)", b.Deployment, image, want)
				}
			}
		})
	}
	kustomization, err := os.ReadFile("overlays/production/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range binaries {
		entry := regexp.MustCompile(`(?m)^  - name: ghcr\.io/cardwire/` + regexp.QuoteMeta(b.Deployment) + `\n    newName: \S+.*\n    newTag: ` + regexp.QuoteMeta(version) + `\n`)
		if !entry.Match(kustomization) {
			t.Errorf("overlays/production: the image %s has no newName line (for your registry) followed by newTag: %s", b.Deployment, version)
		}
	}
}

// changelogVersion is the version of CHANGELOG.md's newest entry
// (## 0.6.0 or ## [0.6.0]).
func changelogVersion(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^## \[?(\d+\.\d+\.\d+[^\]\s]*)\]?`).FindSubmatch(src)
	if m == nil {
		t.Fatal("CHANGELOG.md has no entry ## <version>")
	}
	return string(m[1])
}
