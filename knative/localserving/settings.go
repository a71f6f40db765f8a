package localserving

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"council.dev/shared/council"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	"knative.dev/serving/pkg/apis/autoscaling"
	autoscalingv1alpha1 "knative.dev/serving/pkg/apis/autoscaling/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"knative.dev/serving/pkg/autoscaler/config/autoscalerconfig"
	"knative.dev/serving/pkg/reconciler/autoscaling/resources"
)

// settings is what a Service's revision template says about running it.
type settings struct {
	name          string
	revision      string
	concurrency   int     // containerConcurrency; 0: no limit
	target        float64 // the concurrency per instance the autoscaler aims at
	minScale      int
	maxScale      int // never 0: bounded by the max scale limit
	timeout       time.Duration
	responseStart time.Duration // 0: none but timeout
	probe         probe
}

// probe is a container's readiness probe: an HTTP GET of path with header,
// or, when tcp, a TCP connect.
type probe struct {
	tcp     bool
	path    string
	header  http.Header
	timeout time.Duration
}

// readSettings defaults a copy of svc as Knative's webhook would and reads
// its revision template: the autoscaling annotations as Knative's
// autoscaler resolves them with cfg, limit bounding max-scale.
func readSettings(svc *servingv1.Service, cfg *autoscalerconfig.Config, limit int) (settings, error) {
	if svc == nil {
		return settings{}, council.Invalidf("localserving: nil Service")
	}
	if svc.Name == "" {
		return settings{}, council.Invalidf("localserving: Service without a name")
	}
	ctx := context.Background()
	svc = svc.DeepCopy()
	svc.SetDefaults(ctx)
	tmpl := svc.Spec.Template
	fail := func(format string, args ...any) (settings, error) {
		return settings{}, council.Invalidf("localserving: Service %s: %s", svc.Name, fmt.Sprintf(format, args...))
	}
	if fe := autoscaling.ValidateAnnotations(ctx, cfg, tmpl.Annotations).Filter(apis.ErrorLevel); fe != nil {
		return fail("%v", fe)
	}
	pa := &autoscalingv1alpha1.PodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Annotations: tmpl.Annotations},
		Spec:       autoscalingv1alpha1.PodAutoscalerSpec{ContainerConcurrency: tmpl.Spec.GetContainerConcurrency()},
	}
	if c := pa.Class(); c != autoscaling.KPA {
		return fail("autoscaling class %q: only %q is reproduced", c, autoscaling.KPA)
	}
	if m := pa.Metric(); m != autoscaling.Concurrency {
		return fail("autoscaling metric %q: only %q is reproduced", m, autoscaling.Concurrency)
	}
	target, _ := resources.ResolveMetricTarget(pa, cfg)
	minScale, maxScale := pa.ScaleBounds(cfg)
	if maxScale == 0 || int(maxScale) > limit {
		maxScale = int32(limit)
	}
	if int(minScale) > int(maxScale) {
		return fail("min-scale %d above the local max scale limit %d", minScale, maxScale)
	}
	c, err := servingContainer(tmpl.Spec.Containers)
	if err != nil {
		return fail("%v", err)
	}
	p, err := readinessProbe(c.ReadinessProbe)
	if err != nil {
		return fail("container %s: %v", c.Name, err)
	}
	s := settings{
		name:        svc.Name,
		revision:    tmpl.Name,
		concurrency: int(tmpl.Spec.GetContainerConcurrency()),
		target:      target,
		minScale:    int(minScale),
		maxScale:    int(maxScale),
		probe:       p,
	}
	if s.revision == "" {
		// The name Knative generates for a Configuration's first revision.
		s.revision = svc.Name + "-00001"
	}
	if t := tmpl.Spec.TimeoutSeconds; t != nil && *t > 0 {
		s.timeout = time.Duration(*t) * time.Second
	}
	if t := tmpl.Spec.ResponseStartTimeoutSeconds; t != nil && *t > 0 {
		s.responseStart = time.Duration(*t) * time.Second
	}
	return s, nil
}

// servingContainer is the container that takes the requests: the one with
// a port, or the only one.
func servingContainer(cs []corev1.Container) (*corev1.Container, error) {
	if len(cs) == 1 {
		return &cs[0], nil
	}
	for i := range cs {
		if len(cs[i].Ports) > 0 {
			return &cs[i], nil
		}
	}
	return nil, fmt.Errorf("%d containers and none with a port", len(cs))
}

// readinessProbe reads p, defaulted by Knative (a TCP probe when the
// manifest has none).
func readinessProbe(p *corev1.Probe) (probe, error) {
	out := probe{tcp: true, timeout: time.Second}
	if p == nil {
		return out, nil
	}
	if p.TimeoutSeconds > 0 {
		out.timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	switch {
	case p.HTTPGet != nil:
		out.tcp = false
		out.path = p.HTTPGet.Path
		if !strings.HasPrefix(out.path, "/") {
			out.path = "/" + out.path
		}
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			return probe{}, fmt.Errorf("readiness probe over HTTPS is not reproduced")
		}
		out.header = http.Header{}
		for _, h := range p.HTTPGet.HTTPHeaders {
			out.header.Add(h.Name, h.Value)
		}
	case p.TCPSocket != nil:
	default:
		return probe{}, fmt.Errorf("readiness probe: only httpGet and tcpSocket are reproduced")
	}
	return out, nil
}

// want is how many instances demand (requests in flight and queued) asks
// for: enough that none holds more than the target, within the scale
// bounds, at least one while there is demand.
func (s settings) want(demand int) int {
	n := int(math.Ceil(float64(demand) / s.target))
	if demand > 0 {
		n = max(n, 1)
	}
	return min(max(n, s.minScale), s.maxScale)
}
