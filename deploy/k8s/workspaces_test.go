package k8s_test

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// workspacesOverlays run on WORKSPACES_FILE (components/workspaces); the
// other cardwire overlays (dev) on the single-workspace variables, so the
// tests hold both ways of deploying to their promises.
var workspacesOverlays = []string{"overlays/production", "overlays/existing-nats"}

// maxReloadInterval keeps the README's promise that an edited Secret is in
// force within about two minutes: the kubelet's 60–90 s to update the
// volume, plus at most this long until the binary reads the file again.
const maxReloadInterval = time.Minute

// TestWorkspacesFile: where WORKSPACES_FILE is set, both binaries read the
// same file from a read-only Secret volume that the kubelet can update
// (no subPath), the whole Secret is there for the file's *_file entries, a
// reload interval is set, and none of the single-workspace variables it
// replaces is left (together they are a start-up error).
func TestWorkspacesFile(t *testing.T) {
	for _, dir := range cardwireOverlays {
		t.Run(dir, func(t *testing.T) {
			r := render(t, dir)
			type source struct{ Secret, File, Interval string }
			var sources []source
			for _, b := range binaries {
				spec := r.Deployments[b.Deployment].Spec.Template.Spec
				c := spec.Containers[0]
				env := containerEnv(t, r, c)
				file, set := env["WORKSPACES_FILE"]
				if !slices.Contains(workspacesOverlays, dir) {
					for _, name := range []string{"WORKSPACES_FILE", "WORKSPACES_RELOAD_INTERVAL"} {
						if _, ok := env[name]; ok {
							t.Errorf("%s: %s is set, but %s runs on the single-workspace variables", b.Deployment, name, dir)
						}
					}
					continue
				}
				if !set {
					t.Errorf("%s: WORKSPACES_FILE is not set (components/workspaces)", b.Deployment)
					continue
				}
				for _, name := range singleWorkspaceVariables {
					if _, ok := env[name]; ok {
						t.Errorf("%s: %s is set together with WORKSPACES_FILE, which the binary refuses at start-up", b.Deployment, name)
					}
				}
				if err := mountedSecretFile(r, spec, c, file); err != nil {
					t.Errorf("%s: WORKSPACES_FILE=%s: %v", b.Deployment, file, err)
					continue
				}
				_, v, _, _ := volumeAt(spec, c, file)
				if len(v.Secret.Items) > 0 {
					t.Errorf("%s: volume %s projects only some keys of Secret %s; the file's *_file entries may name any of them",
						b.Deployment, v.Name, v.Secret.SecretName)
				}
				interval, err := time.ParseDuration(env["WORKSPACES_RELOAD_INTERVAL"])
				switch {
				case err != nil:
					t.Errorf("%s: WORKSPACES_RELOAD_INTERVAL=%q: %v", b.Deployment, env["WORKSPACES_RELOAD_INTERVAL"], err)
				case interval <= 0 || interval > maxReloadInterval:
					t.Errorf("%s: WORKSPACES_RELOAD_INTERVAL %s, want positive and at most %s (README: in force within about two minutes)",
						b.Deployment, interval, maxReloadInterval)
				}
				sources = append(sources, source{v.Secret.SecretName, file, env["WORKSPACES_RELOAD_INTERVAL"]})
			}
			if len(sources) == 2 && sources[0] != sources[1] {
				t.Errorf("the receiver reads %+v, the worker %+v: both must serve the same workspaces", sources[0], sources[1])
			}
		})
	}
}

// TestSecretFileCheckRejects keeps mountedSecretFile honest: each way a
// secret file can be readable by others, writable, or frozen at its first
// version must fail.
func TestSecretFileCheckRejects(t *testing.T) {
	const file = "/etc/cardwire/workspaces/workspaces.yaml"
	cases := []struct {
		Name    string
		Mount   corev1.VolumeMount
		Mode    int32
		WantErr bool
	}{
		{"whole directory, read-only", corev1.VolumeMount{MountPath: "/etc/cardwire/workspaces", ReadOnly: true}, 0o440, false},
		{"subPath mount of the file", corev1.VolumeMount{MountPath: file, SubPath: "workspaces.yaml", ReadOnly: true}, 0o440, true},
		{"subPath mount of a directory", corev1.VolumeMount{MountPath: "/etc/cardwire/workspaces", SubPath: "x", ReadOnly: true}, 0o440, true},
		{"writable", corev1.VolumeMount{MountPath: "/etc/cardwire/workspaces"}, 0o440, true},
		{"readable by others", corev1.VolumeMount{MountPath: "/etc/cardwire/workspaces", ReadOnly: true}, 0o444, true},
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			c.Mount.Name = "workspaces"
			fsGroup := int64(65532)
			spec := corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{FSGroup: &fsGroup},
				Volumes: []corev1.Volume{{Name: "workspaces", VolumeSource: corev1.VolumeSource{
					Secret: &corev1.SecretVolumeSource{SecretName: "cardwire-workspaces", DefaultMode: &c.Mode},
				}}},
			}
			ctr := corev1.Container{VolumeMounts: []corev1.VolumeMount{c.Mount}}
			err := mountedSecretFile(&rendered{}, spec, ctr, file)
			if (err != nil) != c.WantErr {
				t.Fatalf("mountedSecretFile: %v, want an error: %t", err, c.WantErr)
			}
		})
	}
}
