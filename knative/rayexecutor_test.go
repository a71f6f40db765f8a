package knative

import (
	"testing"
)

// TestRayExecutorService checks the old Ray Executor's gRPC API as the
// fleet's callers need it in every deployable: a Knative Service whose one
// port is named h2c (Knative then routes HTTP/2 cleartext, gRPC, to it),
// the image of its own command, probes on the health routes it serves on
// that port, council's configuration (models, NATS), no Trigger delivering
// events to it, and the broker as its K_SINK (TestExecuteSink).
func TestRayExecutorService(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			s := service(t, m, "rayexecutor")
			c := s.Spec.Template.Spec.Containers[0]
			if len(c.Ports) != 1 || c.Ports[0].Name != "h2c" || c.Ports[0].ContainerPort == 0 {
				t.Errorf("rayexecutor: ports %+v; want one port named h2c", c.Ports)
			}
			if want := koPrefix + "council.dev/functions/rayexecutor/cmd/rayexecutor"; c.Image != want {
				t.Errorf("rayexecutor: image %q; want %q", c.Image, want)
			}
			for kind, p := range map[string]string{"readiness": readinessPath, "liveness": livenessPath} {
				probe := c.ReadinessProbe
				if kind == "liveness" {
					probe = c.LivenessProbe
				}
				if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != p {
					t.Errorf("rayexecutor: %s probe is not httpGet %s", kind, p)
				}
			}
			var envFrom []string
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					envFrom = append(envFrom, e.ConfigMapRef.Name)
				}
			}
			if len(envFrom) != 2 || envFrom[0] != "council-config" || envFrom[1] != "council-nats" {
				t.Errorf("rayexecutor: envFrom %v; want council-config, council-nats", envFrom)
			}
			for _, tr := range m.triggers {
				if subscriberOf(tr) == "rayexecutor" {
					t.Errorf("Trigger %s delivers events to rayexecutor, which consumes none", tr.Name)
				}
			}
		})
	}
}
