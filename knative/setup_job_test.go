package knative

import (
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"council.dev/knative/kustomized"
)

// TestSetupJob checks the council-setup Job of every deployable: it runs
// the execute image with -setup (host.SetupNATS, what `council setup`
// does) in the functions' own environment (the same ConfigMaps) and under
// execute's security context, restarting until NATS answers; and the
// functions bind to what it sets up (COUNCIL_NATS_SETUP=bind).
func TestSetupJob(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			km, err := kustomized.Decode(objs)
			if err != nil {
				t.Fatal(err)
			}
			var job *corev1.PodTemplateSpec
			for _, j := range km.Jobs {
				if j.Name == "council-setup" {
					job = &j.Spec.Template
				}
			}
			if job == nil {
				t.Fatalf("no Job council-setup")
			}
			if p := job.Spec.RestartPolicy; p != corev1.RestartPolicyOnFailure && p != corev1.RestartPolicyNever {
				t.Errorf("council-setup: restartPolicy %q; a Job's pods take OnFailure or Never", p)
			}
			if len(job.Spec.Containers) != 1 {
				t.Fatalf("council-setup: %d containers; want 1", len(job.Spec.Containers))
			}
			c := job.Spec.Containers[0]
			m := decode(t, objs)
			execute := service(t, m, "execute").Spec.Template.Spec.Containers[0]
			if c.Image != execute.Image {
				t.Errorf("council-setup: image %q; want execute's %q", c.Image, execute.Image)
			}
			if !slices.Equal(c.Args, []string{"-setup"}) {
				t.Errorf("council-setup: args %q; want [-setup]", c.Args)
			}
			if !reflect.DeepEqual(c.EnvFrom, execute.EnvFrom) {
				t.Errorf("council-setup: envFrom %+v; want execute's %+v", c.EnvFrom, execute.EnvFrom)
			}
			if !reflect.DeepEqual(c.SecurityContext, execute.SecurityContext) {
				t.Errorf("council-setup: securityContext %+v; want execute's %+v", c.SecurityContext, execute.SecurityContext)
			}
			if got := configMap(t, m, "council-config").Data["COUNCIL_NATS_SETUP"]; got != "bind" {
				t.Errorf("council-config: COUNCIL_NATS_SETUP %q; want bind, the topology being the Job's", got)
			}
		})
	}
}
