package knative

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// Knative autoscaling annotations on a revision template.
const (
	annotationMinScale = "autoscaling.knative.dev/min-scale"
	annotationMaxScale = "autoscaling.knative.dev/max-scale"
)

// Health routes of the function host (the Knative function contract).
const (
	readinessPath = "/health/readiness"
	livenessPath  = "/health/liveness"
)

// minTimeoutSeconds is the least revision timeout a function may have: a
// deliberation step may wait on a slow LLM for minutes.
const minTimeoutSeconds = 600

// functionNames are the council functions, one Knative Service each.
func functionNames() []string { return []string{"execute", "generate", "critique"} }

// isFunction reports whether s is one of the council functions (as opposed
// to the dead-letter sink).
func isFunction(s *servingv1.Service) bool {
	return s.Labels["app.kubernetes.io/component"] == "function"
}

// configMap returns the ConfigMap name of m, failing t when it is missing.
func configMap(t *testing.T, m manifests, name string) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range m.configMaps {
		if cm.Name == name {
			return cm
		}
	}
	t.Fatalf("ConfigMap %s is not deployed", name)
	return nil
}

// slowestLLMCall is how long one LLM call may take with all its retries,
// from council-config (COUNCIL_LLM_TIMEOUT x (1 + COUNCIL_LLM_RETRIES)),
// backoff between retries not counted.
func slowestLLMCall(t *testing.T, m manifests) time.Duration {
	t.Helper()
	cfg := configMap(t, m, "council-config").Data
	timeout, err := time.ParseDuration(cfg["COUNCIL_LLM_TIMEOUT"])
	if err != nil {
		t.Fatalf("council-config COUNCIL_LLM_TIMEOUT: %v", err)
	}
	retries, err := strconv.Atoi(cfg["COUNCIL_LLM_RETRIES"])
	if err != nil {
		t.Fatalf("council-config COUNCIL_LLM_RETRIES: %v", err)
	}
	return timeout * time.Duration(1+retries)
}

// scale returns the min-scale and max-scale annotations of s, failing t
// when one is missing or not a number.
func scale(t *testing.T, s *servingv1.Service) (lo, hi int) {
	t.Helper()
	a := s.Spec.Template.Annotations
	lo, err := strconv.Atoi(a[annotationMinScale])
	if err != nil {
		t.Errorf("Service %s: %s %q: %v", s.Name, annotationMinScale, a[annotationMinScale], err)
	}
	hi, err = strconv.Atoi(a[annotationMaxScale])
	if err != nil {
		t.Errorf("Service %s: %s %q: %v", s.Name, annotationMaxScale, a[annotationMaxScale], err)
	}
	return lo, hi
}

// TestServicesContract checks every Knative Service against what the
// cluster and the functions need: a concurrency limit, no service-link
// environment, cluster-local visibility, and resources; and, for each
// function: health probes on the function host's routes, revision timeouts
// above a slow LLM call, scale bounds, the ko image of its own command, and
// the council configuration and secret.
func TestServicesContract(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			slowest := slowestLLMCall(t, m)
			var functions []string
			for _, s := range m.services {
				spec := s.Spec.Template.Spec
				if cc := spec.ContainerConcurrency; cc == nil || *cc <= 0 {
					t.Errorf("Service %s: containerConcurrency %v; want > 0", s.Name, cc)
				}
				if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
					t.Errorf("Service %s: enableServiceLinks not false; want false (no Service variables in the environment)", s.Name)
				}
				if v := s.Labels["networking.knative.dev/visibility"]; v != "cluster-local" {
					t.Errorf("Service %s: visibility %q; want cluster-local (only the broker calls it)", s.Name, v)
				}
				if len(spec.Containers) != 1 {
					t.Errorf("Service %s: %d containers; want 1", s.Name, len(spec.Containers))
					continue
				}
				c := spec.Containers[0]
				for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[r]; !ok {
						t.Errorf("Service %s: no %s request", s.Name, r)
					}
					if _, ok := c.Resources.Limits[r]; !ok {
						t.Errorf("Service %s: no %s limit", s.Name, r)
					}
				}
				lo, hi := scale(t, s)
				if lo < 0 || hi < 1 || lo > hi {
					t.Errorf("Service %s: min-scale %d, max-scale %d; want 0 <= min <= max, max >= 1", s.Name, lo, hi)
				}
				if !isFunction(s) {
					continue
				}
				functions = append(functions, s.Name)
				checkFunction(t, m, s, slowest)
			}
			slices.Sort(functions)
			want := functionNames()
			slices.Sort(want)
			if diff := cmp.Diff(want, functions); diff != "" {
				t.Errorf("function Services (-want +got):\n%s", diff)
			}
		})
	}
}

// checkFunction checks the parts of TestServicesContract that apply to a
// council function.
func checkFunction(t *testing.T, m manifests, s *servingv1.Service, slowest time.Duration) {
	t.Helper()
	spec := s.Spec.Template.Spec
	c := spec.Containers[0]

	probe := func(kind string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
			t.Errorf("Service %s: %s probe is not httpGet %s", s.Name, kind, path)
			return
		}
		// Knative admits any port, but the function host serves the health
		// routes only on the container port ($PORT).
		if port := p.HTTPGet.Port; port.IntValue() != 0 && (len(c.Ports) == 0 || port.IntValue() != int(c.Ports[0].ContainerPort)) {
			t.Errorf("Service %s: %s probe on port %s; want the container port", s.Name, kind, port.String())
		}
	}
	probe("readiness", c.ReadinessProbe, readinessPath)
	probe("liveness", c.LivenessProbe, livenessPath)

	if ts := spec.TimeoutSeconds; ts == nil || *ts < minTimeoutSeconds {
		t.Errorf("Service %s: timeoutSeconds %v; want >= %d", s.Name, ts, minTimeoutSeconds)
	}
	rs := spec.ResponseStartTimeoutSeconds
	switch {
	case rs == nil:
		t.Errorf("Service %s: no responseStartTimeoutSeconds", s.Name)
	case time.Duration(*rs)*time.Second <= slowest:
		t.Errorf("Service %s: responseStartTimeoutSeconds %d; want above the slowest LLM call with retries, %s",
			s.Name, *rs, slowest)
	case spec.TimeoutSeconds != nil && *rs > *spec.TimeoutSeconds:
		t.Errorf("Service %s: responseStartTimeoutSeconds %d above timeoutSeconds %d", s.Name, *rs, *spec.TimeoutSeconds)
	}

	cc := *spec.ContainerConcurrency
	switch s.Name {
	case "generate", "critique":
		if cc != 4 {
			t.Errorf("Service %s: containerConcurrency %d; want 4 (LLM-bound)", s.Name, cc)
		}
	case "execute":
		if cc <= 4 {
			t.Errorf("Service %s: containerConcurrency %d; want more than the LLM-bound functions' 4", s.Name, cc)
		}
	}

	if want := koPrefix + "council.dev/functions/" + s.Name + "/cmd/" + s.Name; c.Image != want {
		t.Errorf("Service %s: image %q; want %q", s.Name, c.Image, want)
	}

	var envFrom []string
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil {
			envFrom = append(envFrom, e.ConfigMapRef.Name)
			configMap(t, m, e.ConfigMapRef.Name)
		}
	}
	if diff := cmp.Diff([]string{"council-config", "council-nats"}, envFrom); diff != "" {
		t.Errorf("Service %s: envFrom ConfigMaps (-want +got):\n%s", s.Name, diff)
	}

	var key *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "COUNCIL_LLM_API_KEY" && e.ValueFrom != nil {
			key = e.ValueFrom.SecretKeyRef
		}
	}
	if key == nil || key.Name != "council-secrets" || key.Key != "COUNCIL_LLM_API_KEY" {
		t.Errorf("Service %s: COUNCIL_LLM_API_KEY from %+v; want Secret council-secrets key COUNCIL_LLM_API_KEY", s.Name, key)
	} else if !deploysSecretKey(m, key) && (key.Optional == nil || !*key.Optional) {
		t.Errorf("Service %s: Secret %s is not deployed and the reference is not optional", s.Name, key.Name)
	}
}

// deploysSecretKey reports whether m holds the Secret key ref names.
func deploysSecretKey(m manifests, ref *corev1.SecretKeySelector) bool {
	for _, s := range m.secrets {
		if s.Name == ref.Name {
			_, inData := s.Data[ref.Key]
			_, inString := s.StringData[ref.Key]
			return inData || inString
		}
	}
	return false
}

// TestOnlyDevShipsTheSecret checks that no deployable but dev carries the
// Secret council-secrets, and that dev's holds an empty key: a real key is
// created in the cluster, never committed.
func TestOnlyDevShipsTheSecret(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			for _, s := range m.secrets {
				if dir != dirDev {
					t.Errorf("Secret %s is deployed; only overlays/dev may ship one", s.Name)
					continue
				}
				for k, v := range s.Data {
					if len(v) != 0 {
						t.Errorf("Secret %s: key %s is not empty", s.Name, k)
					}
				}
				for k, v := range s.StringData {
					if v != "" {
						t.Errorf("Secret %s: key %s is not empty", s.Name, k)
					}
				}
			}
			if dir == dirDev && len(m.secrets) != 1 {
				t.Errorf("dev: Secrets %v; want council-secrets", names(m.secrets))
			}
		})
	}
}

// service returns the Service name of m, failing t when it is missing.
func service(t *testing.T, m manifests, name string) *servingv1.Service {
	t.Helper()
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("Service %s is not deployed", name)
	return nil
}

// limit returns the resource limit r of s's container.
func limit(s *servingv1.Service, r corev1.ResourceName) resource.Quantity {
	return s.Spec.Template.Spec.Containers[0].Resources.Limits[r]
}

// retries returns the retry count of every Trigger and Broker of m, by
// kind and name.
func retries(m manifests) map[string]int32 {
	out := map[string]int32{}
	for _, tr := range m.triggers {
		if d := tr.Spec.Delivery; d != nil && d.Retry != nil {
			out["Trigger "+tr.Name] = *d.Retry
		}
	}
	for _, b := range m.brokers {
		if d := b.Spec.Delivery; d != nil && d.Retry != nil {
			out["Broker "+b.Name] = *d.Retry
		}
	}
	return out
}

// TestOverlays checks what each overlay changes: dev scales everything to
// zero, shrinks the functions and retries once; prod keeps one execute
// warm, grows the functions' limits, retries more than base and sweeps
// every minute.
func TestOverlays(t *testing.T) {
	base := decode(t, render(t, dirBase))
	dev := decode(t, render(t, dirDev))
	prod := decode(t, render(t, dirProd))
	baseRetries := retries(base)

	t.Run("base", func(t *testing.T) {
		for _, s := range base.services {
			if lo, _ := scale(t, s); lo != 0 {
				t.Errorf("Service %s: min-scale %d; want 0 (scale to zero)", s.Name, lo)
			}
		}
	})

	t.Run("dev", func(t *testing.T) {
		for _, s := range dev.services {
			if lo, _ := scale(t, s); lo != 0 {
				t.Errorf("Service %s: min-scale %d; want 0", s.Name, lo)
			}
		}
		for _, name := range functionNames() {
			d, b := service(t, dev, name), service(t, base, name)
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if dl, bl := limit(d, r), limit(b, r); dl.Cmp(bl) >= 0 {
					t.Errorf("Service %s: dev %s limit %s; want below base's %s", name, r, dl.String(), bl.String())
				}
			}
		}
		got := retries(dev)
		if len(got) != len(baseRetries) {
			t.Errorf("dev: %d objects with retries; want %d as in base", len(got), len(baseRetries))
		}
		for name, n := range got {
			if n != 1 {
				t.Errorf("dev: %s retry %d; want 1", name, n)
			}
		}
	})

	t.Run("prod", func(t *testing.T) {
		for _, s := range prod.services {
			want := 0
			if s.Name == "execute" {
				want = 1
			}
			if lo, _ := scale(t, s); lo != want {
				t.Errorf("Service %s: min-scale %d; want %d", s.Name, lo, want)
			}
		}
		for _, name := range functionNames() {
			p, b := service(t, prod, name), service(t, base, name)
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if pl, bl := limit(p, r), limit(b, r); pl.Cmp(bl) <= 0 {
					t.Errorf("Service %s: prod %s limit %s; want above base's %s", name, r, pl.String(), bl.String())
				}
			}
		}
		got := retries(prod)
		if len(got) != len(baseRetries) {
			t.Errorf("prod: %d objects with retries; want %d as in base", len(got), len(baseRetries))
		}
		for name, n := range got {
			if n <= baseRetries[name] {
				t.Errorf("prod: %s retry %d; want more than base's %d", name, n, baseRetries[name])
			}
		}
		if len(prod.pingSources) == 1 && prod.pingSources[0].Spec.Schedule != "* * * * *" {
			t.Errorf("prod: sweep schedule %q; want every minute", prod.pingSources[0].Spec.Schedule)
		}
	})
}
