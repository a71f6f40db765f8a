package localserving

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"council.dev/shared/council"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"
)

// TestSettingsFromManifests reads our Services as Knative's autoscaler
// would: the target is ResolveMetricTarget's (the annotation, capped by
// containerConcurrency, times the default utilization 0.7).
func TestSettingsFromManifests(t *testing.T) {
	defaults, err := defaultOptions()
	if err != nil {
		t.Fatal(err)
	}
	readiness := probe{path: "/health/readiness", header: map[string][]string{}, timeout: time.Second}
	tests := []struct {
		file string
		want settings
	}{
		{"execute.yaml", settings{name: "execute", revision: "execute-00001", concurrency: 50, target: 40 * 0.7,
			maxScale: 5, timeout: 900 * time.Second, responseStart: 600 * time.Second, probe: readiness}},
		{"generate.yaml", settings{name: "generate", revision: "generate-00001", concurrency: 4, target: 3 * 0.7,
			maxScale: 8, timeout: 900 * time.Second, responseStart: 600 * time.Second, probe: readiness}},
		{"critique.yaml", settings{name: "critique", revision: "critique-00001", concurrency: 4, target: 3 * 0.7,
			maxScale: 8, timeout: 900 * time.Second, responseStart: 600 * time.Second, probe: readiness}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("..", "base", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			var svc servingv1.Service
			if err := yaml.Unmarshal(b, &svc); err != nil {
				t.Fatal(err)
			}
			got, err := readSettings(&svc, defaults.autoscaler, defaults.maxScaleLimit)
			if err != nil {
				t.Fatal(err)
			}
			opts := cmp.Options{cmp.AllowUnexported(settings{}, probe{}),
				cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })}
			if d := cmp.Diff(tt.want, got, opts); d != "" {
				t.Errorf("settings (-want +got):\n%s", d)
			}
		})
	}
}

// TestSettingsDefaults: what Knative defaults when the manifest says
// nothing: target 100 × 0.7 without containerConcurrency, containerConcurrency
// × 0.7 without a target, a timeout of 300 s, a TCP probe; max-scale
// bounded by the local limit.
func TestSettingsDefaults(t *testing.T) {
	defaults, err := defaultOptions()
	if err != nil {
		t.Fatal(err)
	}
	bare := knService("bare", nil, 0, 0)
	bare.Spec.Template.Spec.Containers[0].ReadinessProbe = nil
	got, err := readSettings(bare, defaults.autoscaler, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := settings{name: "bare", revision: "bare-00001", target: 70, maxScale: 3, timeout: 300 * time.Second,
		probe: probe{tcp: true, timeout: time.Second}}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(settings{}, probe{})); d != "" {
		t.Errorf("settings (-want +got):\n%s", d)
	}
	got, err = readSettings(knService("cc", nil, 10, 0), defaults.autoscaler, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got.target != 7 {
		t.Errorf("target with containerConcurrency 10 = %v, want 7", got.target)
	}
}

// TestAddRejects: a Service or Command that cannot run is a clear error,
// classified, and nothing is served.
func TestAddRejects(t *testing.T) {
	sv := newServing(t)
	withAnn := func(k, v string) *servingv1.Service {
		return knService("bad", map[string]string{k: v}, 0, 0)
	}
	exec := knService("exec", nil, 0, 0)
	exec.Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet = nil
	exec.Spec.Template.Spec.Containers[0].ReadinessProbe.Exec = &corev1Exec
	tests := []struct {
		name string
		svc  *servingv1.Service
		cmd  Command
		want error
	}{
		{"nil service", nil, receiver(), council.ErrInvalid},
		{"no name", knService("", nil, 0, 0), receiver(), council.ErrInvalid},
		{"min-scale not a number", withAnn("autoscaling.knative.dev/min-scale", "x"), receiver(), council.ErrInvalid},
		{"min above max", knService("bad", map[string]string{
			"autoscaling.knative.dev/min-scale": "3", "autoscaling.knative.dev/max-scale": "2"}, 0, 0), receiver(), council.ErrInvalid},
		{"rps metric", withAnn("autoscaling.knative.dev/metric", "rps"), receiver(), council.ErrInvalid},
		{"hpa class", withAnn("autoscaling.knative.dev/class", "hpa.autoscaling.knative.dev"), receiver(), council.ErrInvalid},
		{"exec probe", exec, receiver(), council.ErrInvalid},
		{"no binary", knService("nobin", nil, 0, 0), Command{}, council.ErrInvalid},
		{"missing binary", knService("missing", nil, 0, 0), Command{Path: filepath.Join(t.TempDir(), "none")}, council.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sv.Add(tt.svc, tt.cmd)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Add = %v, want %v", err, tt.want)
			}
			t.Log(err)
		})
	}
	add(t, sv, knService("twice", nil, 0, 0), receiver())
	if err := sv.Add(knService("twice", nil, 0, 0), receiver()); !errors.Is(err, council.ErrConflict) {
		t.Errorf("second Add = %v, want ErrConflict", err)
	}
	if sv.URL("bad") != "" || sv.URL("twice") == "" {
		t.Errorf("URL(bad) = %q, URL(twice) = %q; want only twice served", sv.URL("bad"), sv.URL("twice"))
	}
	if _, err := sv.Kill("twice"); !errors.Is(err, council.ErrNotFound) {
		t.Errorf("Kill with no instance = %v, want ErrNotFound", err)
	}
}

var corev1Exec = corev1.ExecAction{Command: []string{"true"}}
