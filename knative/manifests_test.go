package knative

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	eventingv1alpha1 "knative.dev/eventing/pkg/apis/eventing/v1alpha1"
	eventingfeature "knative.dev/eventing/pkg/apis/feature"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	"knative.dev/pkg/apis"
	servingconfig "knative.dev/serving/pkg/apis/config"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	autoscalerconfig "knative.dev/serving/pkg/autoscaler/config"

	"council.dev/knative/kustomized"
)

// Kustomization directories, relative to the module root.
const (
	dirBase     = "base"
	dirDev      = "overlays/dev"
	dirProd     = "overlays/prod"
	dirPlatform = "platform"
	// dirOIDC is prod with the OIDC component (components/oidc), for a
	// broker whose channel sends OIDC tokens; dirPlatformOIDC the Eventing
	// flag it needs.
	dirOIDC         = "testdata/oidc"
	dirPlatformOIDC = "platform/oidc"
)

// deployables are the kustomizations that deploy council, each a complete
// set of manifests: the ones council ships, and prod with OIDC.
func deployables() []string { return append(shipped(), dirOIDC) }

// shipped are the kustomizations council ships as they are.
func shipped() []string { return []string{dirBase, dirDev, dirProd} }

// platformOf returns the Knative settings the deployable dir needs:
// platform/, and platform/oidc for the OIDC component.
func platformOf(dir string) []string {
	if dir == dirOIDC {
		return []string{dirPlatform, dirPlatformOIDC}
	}
	return []string{dirPlatform}
}

// object is one rendered document.
type object = kustomized.Object

// render builds the kustomization in dir in-process, as `kustomize build
// dir` would, and fails t when it does not build.
func render(t *testing.T, dir string) []object {
	t.Helper()
	objs, err := kustomized.Render(dir)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// manifests are rendered documents decoded into the API types the cluster
// would decode them into.
type manifests struct {
	services     []*servingv1.Service
	brokers      []*eventingv1.Broker
	triggers     []*eventingv1.Trigger
	pingSources  []*sourcesv1.PingSource
	sinkBindings []*sourcesv1.SinkBinding
	configMaps   []*corev1.ConfigMap
	namespaces   []*corev1.Namespace
	secrets      []*corev1.Secret
	// eventPolicies and networkPolicies are security.go's subject.
	eventPolicies   []*eventingv1alpha1.EventPolicy
	networkPolicies []*networkingv1.NetworkPolicy
}

// decode decodes every object strictly (kustomized.Decode) and fails t on
// an error or a kind this deployment does not use.
func decode(t *testing.T, objs []object) manifests {
	t.Helper()
	m, err := kustomized.Decode(objs)
	if err != nil {
		t.Fatal(err)
	}
	return manifests{
		services:        m.Services,
		brokers:         m.Brokers,
		triggers:        m.Triggers,
		pingSources:     m.PingSources,
		sinkBindings:    m.SinkBindings,
		configMaps:      m.ConfigMaps,
		namespaces:      m.Namespaces,
		secrets:         m.Secrets,
		eventPolicies:   m.EventPolicies,
		networkPolicies: m.NetworkPolicies,
	}
}

// knativeObject is what Knative's admission webhooks do to a resource:
// default it, then validate it.
type knativeObject interface {
	apis.Defaultable
	apis.Validatable
}

// admit defaults and validates obj as Knative's webhook would on create and
// returns its error-level diagnostics; warnings are logged.
func admit(ctx context.Context, t *testing.T, obj knativeObject, name string) error {
	t.Helper()
	obj.SetDefaults(ctx)
	fe := obj.Validate(ctx)
	if w := fe.Filter(apis.WarningLevel); w != nil {
		t.Logf("%s: warning: %v", name, w)
	}
	if e := fe.Filter(apis.ErrorLevel); e != nil {
		return e
	}
	return nil
}

// clusterContext is the context Knative's webhooks validate with on a
// cluster whose Knative settings are platformCMs (ConfigMaps in
// knative-serving and knative-eventing), on create. A setting not given
// takes the default of a stock installation.
func clusterContext(t *testing.T, platformCMs []*corev1.ConfigMap) context.Context {
	t.Helper()
	data := func(ns, name string) map[string]string {
		for _, cm := range platformCMs {
			if cm.Namespace == ns && cm.Name == name {
				return cm.Data
			}
		}
		return nil
	}
	defaults, err := servingconfig.NewDefaultsConfigFromMap(data("knative-serving", servingconfig.DefaultsConfigName))
	if err != nil {
		t.Fatalf("serving %s: %v", servingconfig.DefaultsConfigName, err)
	}
	features, err := servingconfig.NewFeaturesConfigFromMap(data("knative-serving", servingconfig.FeaturesConfigName))
	if err != nil {
		t.Fatalf("serving %s: %v", servingconfig.FeaturesConfigName, err)
	}
	autoscaler, err := autoscalerconfig.NewConfigFromMap(data("knative-serving", "config-autoscaler"))
	if err != nil {
		t.Fatalf("serving config-autoscaler: %v", err)
	}
	flags, err := eventingfeature.NewFlagsConfigFromMap(data("knative-eventing", eventingfeature.FlagsConfigName))
	if err != nil {
		t.Fatalf("eventing %s: %v", eventingfeature.FlagsConfigName, err)
	}
	ctx := servingconfig.ToContext(context.Background(), &servingconfig.Config{
		Defaults:   defaults,
		Features:   features,
		Autoscaler: autoscaler,
	})
	ctx = eventingfeature.ToContext(ctx, flags)
	return apis.WithinCreate(ctx)
}

// platformContext is clusterContext with the settings the deployable dir
// needs (platformOf).
func platformContext(t *testing.T, dir string) context.Context {
	t.Helper()
	var cms []*corev1.ConfigMap
	for _, p := range platformOf(dir) {
		cms = append(cms, decode(t, render(t, p)).configMaps...)
	}
	return clusterContext(t, cms)
}

// koPrefix marks an image ko builds from a Go import path.
const koPrefix = "ko://"

// resolveKo returns s with every ko:// image replaced by a digest reference
// of the shape `ko resolve` writes, as the cluster would receive it.
// Knative's webhook rejects a ko:// reference, which is not an image name.
func resolveKo(s *servingv1.Service) *servingv1.Service {
	s = s.DeepCopy()
	for i, c := range s.Spec.Template.Spec.Containers {
		if path, ok := strings.CutPrefix(c.Image, koPrefix); ok {
			s.Spec.Template.Spec.Containers[i].Image = "registry.example/" +
				path[strings.LastIndex(path, "/")+1:] + "@sha256:" + strings.Repeat("0", 64)
		}
	}
	return s
}

// admitAll admits every Knative object of m in ctx and returns one error per
// rejected object.
func admitAll(ctx context.Context, t *testing.T, m manifests) []error {
	t.Helper()
	var errs []error
	check := func(kind, name string, obj knativeObject) {
		if err := admit(ctx, t, obj, kind+" "+name); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", kind, name, err))
		}
	}
	for _, s := range m.services {
		check("Service", s.Name, resolveKo(s))
	}
	for _, b := range m.brokers {
		check("Broker", b.Name, b.DeepCopy())
	}
	for _, tr := range m.triggers {
		check("Trigger", tr.Name, tr.DeepCopy())
	}
	for _, p := range m.pingSources {
		check("PingSource", p.Name, p.DeepCopy())
	}
	for _, sb := range m.sinkBindings {
		check("SinkBinding", sb.Name, sb.DeepCopy())
	}
	for _, ep := range m.eventPolicies {
		check("EventPolicy", ep.Name, ep.DeepCopy())
	}
	return errs
}

// TestManifestsAreAdmitted renders every kustomization, decodes each
// document strictly into its API type, and runs Knative's own defaulting and
// validation on it, as the admission webhooks would on kubectl apply to a
// cluster with platform/ applied. Any error-level diagnostic fails.
func TestManifestsAreAdmitted(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			ctx := platformContext(t, dir)
			m := decode(t, render(t, dir))
			if len(m.services) == 0 || len(m.triggers) == 0 || len(m.brokers) == 0 {
				t.Fatalf("%s: %d Services, %d Triggers, %d Brokers; want some of each",
					dir, len(m.services), len(m.triggers), len(m.brokers))
			}
			for _, err := range admitAll(ctx, t, m) {
				t.Error(err)
			}
		})
	}
}

// TestPlatformSettingsAreNeeded shows why platform/ exists: on a stock
// Knative Serving, whose max-revision-timeout-seconds is 600, the webhook
// rejects the functions' timeoutSeconds. Should the timeouts come down to
// the stock limit, this test fails and platform/ can go.
func TestPlatformSettingsAreNeeded(t *testing.T) {
	stock := clusterContext(t, nil)
	m := decode(t, render(t, dirBase))
	var rejected []string
	for _, s := range m.services {
		if err := admit(stock, t, resolveKo(s), "Service "+s.Name); err != nil {
			if !strings.Contains(err.Error(), "timeoutSeconds") {
				t.Errorf("Service %s on stock Knative: %v; want only a timeoutSeconds error", s.Name, err)
			}
			rejected = append(rejected, s.Name)
		}
	}
	if len(rejected) == 0 {
		t.Error("every Service is admitted by a stock Knative Serving: platform/config-defaults.yaml is no longer needed")
	}
}

// TestPlatformSettingsParse checks platform/ and platform/oidc hold only
// ConfigMaps of the Knative installation, each parsed without error by
// Knative's own config constructors (a wrong value would make the Knative
// controllers fail).
func TestPlatformSettingsParse(t *testing.T) {
	for _, dir := range []string{dirPlatform, dirPlatformOIDC} {
		t.Run(dir, func(t *testing.T) { checkPlatformSettings(t, dir) })
	}
}

func checkPlatformSettings(t *testing.T, dir string) {
	m := decode(t, render(t, dir))
	if len(m.configMaps) == 0 {
		t.Errorf("%s has no ConfigMap", dir)
	}
	if n := len(m.services) + len(m.brokers) + len(m.triggers) + len(m.pingSources) +
		len(m.sinkBindings) + len(m.namespaces) + len(m.secrets) + len(m.eventPolicies) + len(m.networkPolicies); n != 0 {
		t.Errorf("%s has %d objects besides ConfigMaps; want only Knative settings", dir, n)
	}
	for _, cm := range m.configMaps {
		var err error
		switch cm.Namespace + "/" + cm.Name {
		case "knative-serving/" + servingconfig.DefaultsConfigName:
			var d *servingconfig.Defaults
			d, err = servingconfig.NewDefaultsConfigFromConfigMap(cm)
			if err == nil && d.MaxRevisionTimeoutSeconds < 900 {
				err = fmt.Errorf("max-revision-timeout-seconds %d; want at least 900", d.MaxRevisionTimeoutSeconds)
			}
		case "knative-serving/" + servingconfig.FeaturesConfigName:
			_, err = servingconfig.NewFeaturesConfigFromConfigMap(cm)
		case "knative-eventing/" + eventingfeature.FlagsConfigName:
			_, err = eventingfeature.NewFlagsConfigFromConfigMap(cm)
		default:
			err = fmt.Errorf("not a Knative setting this module knows how to check")
		}
		if err != nil {
			t.Errorf("ConfigMap %s/%s: %v", cm.Namespace, cm.Name, err)
		}
	}
}

// TestEverythingIsInTheCouncilNamespace checks that each deployable puts
// every namespaced object in the namespace it creates.
func TestEverythingIsInTheCouncilNamespace(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			objs := render(t, dir)
			m := decode(t, objs)
			if len(m.namespaces) != 1 || m.namespaces[0].Name != "council" {
				t.Fatalf("%s: namespaces %v; want exactly council", dir, names(m.namespaces))
			}
			for _, o := range objs {
				if o.Kind != "Namespace" && o.Namespace != "council" {
					t.Errorf("%v: namespace %q; want council", o, o.Namespace)
				}
			}
		})
	}
}

// named is an object with a name.
type named interface{ GetName() string }

// names lists the names of objs.
func names[T named](objs []T) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.GetName())
	}
	return out
}
