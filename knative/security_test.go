package knative

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"knative.dev/eventing/pkg/apis/eventing/v1alpha1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
)

// TestEveryFunctionHasItsEventPolicy: with the OIDC component, each
// function has one EventPolicy whose senders are exactly the Triggers that
// subscribe it; each of those Triggers asks for the function's OIDC
// audience, council.dev/<function>, and is named <function>-*, and the
// function verifies exactly that audience and those subjects.
func TestEveryFunctionHasItsEventPolicy(t *testing.T) {
	dir := dirOIDC
	m := decode(t, render(t, dir))
	if len(m.eventPolicies) != len(functionNames()) {
		t.Errorf("%s has %d EventPolicies; want one per function", dir, len(m.eventPolicies))
	}
	for _, fn := range functionNames() {
		var policies []*v1alpha1.EventPolicy
		for _, ep := range m.eventPolicies {
			for _, to := range ep.Spec.To {
				if to.Ref != nil && to.Ref.APIVersion == "serving.knative.dev/v1" && to.Ref.Kind == "Service" && to.Ref.Name == fn {
					policies = append(policies, ep)
				}
			}
		}
		if len(policies) != 1 {
			t.Errorf("%s: %d EventPolicies to Service %s; want 1", dir, len(policies), fn)
			continue
		}
		ep := policies[0]
		if len(ep.Spec.To) != 1 {
			t.Errorf("EventPolicy %s applies to %d targets; want only %s", ep.Name, len(ep.Spec.To), fn)
		}
		var senders, subscribers []string
		for _, from := range ep.Spec.From {
			if from.Ref == nil || from.Ref.APIVersion != "eventing.knative.dev/v1" || from.Ref.Kind != "Trigger" {
				t.Errorf("EventPolicy %s allows a sender %+v that is not a Trigger", ep.Name, from)
				continue
			}
			senders = append(senders, from.Ref.Name)
		}
		for _, tr := range m.triggers {
			if subscriberOf(tr) != fn {
				continue
			}
			subscribers = append(subscribers, tr.Name)
			if aud := tr.Spec.Subscriber.Audience; aud == nil || *aud != "council.dev/"+fn {
				t.Errorf("Trigger %s: subscriber audience %v; want council.dev/%s", tr.Name, aud, fn)
			}
			if !strings.HasPrefix(tr.Name, fn+"-") {
				t.Errorf("Trigger %s subscribes %s but its service account is not one of %s-*", tr.Name, fn, fn)
			}
		}
		env := functionEnv(t, m, fn)
		want := map[string]string{
			"COUNCIL_AUTH_OIDC_AUDIENCE": "council.dev/" + fn,
			"COUNCIL_AUTH_OIDC_SUBJECTS": "system:serviceaccount:council:" + fn + "-*",
			"COUNCIL_AUTH_OIDC_ISSUER":   "https://kubernetes.default.svc.cluster.local",
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("Service %s: %s=%q; want %q", fn, k, env[k], v)
			}
		}
		slices.Sort(senders)
		slices.Sort(subscribers)
		if len(subscribers) == 0 {
			t.Errorf("%s: no Trigger subscribes %s", dir, fn)
		}
		if diff := cmp.Diff(subscribers, senders); diff != "" {
			t.Errorf("EventPolicy %s senders differ from the Triggers of %s (-triggers +policy):\n%s", ep.Name, fn, diff)
		}
	}
}

// TestEventPoliciesNeedTheOIDCFeature shows why platform/oidc exists: a
// stock Knative Eventing refuses an EventPolicy.
func TestEventPoliciesNeedTheOIDCFeature(t *testing.T) {
	stock := clusterContext(t, nil)
	m := decode(t, render(t, dirOIDC))
	if len(m.eventPolicies) == 0 {
		t.Fatal("the OIDC component adds no EventPolicy")
	}
	for _, ep := range m.eventPolicies {
		if err := admit(stock, t, ep.DeepCopy(), "EventPolicy "+ep.Name); err == nil {
			t.Errorf("EventPolicy %s admitted without authentication-oidc; want refused", ep.Name)
		}
	}
}

// TestShippedManifestsNeedNoOIDC: the kustomizations council ships run on
// the broker they name, a NatsJetStreamChannel, whose dispatcher
// (eventing-natss 1.15.1) sends no OIDC token. On a real cluster with
// authentication-oidc on, the broker filter answered 401 to every delivery
// from that channel and no event reached a function (docs/deploy.md). So
// they hold no EventPolicy (refused while the feature is off), no function
// demands a token, and platform/ leaves the feature alone: OIDC is the
// opt-in components/oidc with platform/oidc.
func TestShippedManifestsNeedNoOIDC(t *testing.T) {
	for _, dir := range shipped() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			if len(m.eventPolicies) != 0 {
				t.Errorf("%s has %d EventPolicies; want none (components/oidc)", dir, len(m.eventPolicies))
			}
			for _, fn := range functionNames() {
				for k := range functionEnv(t, m, fn) {
					if strings.HasPrefix(k, "COUNCIL_AUTH_OIDC_") {
						t.Errorf("%s: Service %s sets %s; want it only from components/oidc", dir, fn, k)
					}
				}
			}
		})
	}
	for _, cm := range decode(t, render(t, dirPlatform)).configMaps {
		if _, ok := cm.Data["authentication-oidc"]; ok {
			t.Errorf("platform/ sets authentication-oidc in %s/%s; want it only in platform/oidc", cm.Namespace, cm.Name)
		}
	}
}

// functionEnv returns the literal environment of the function fn's
// container in m, failing t when m has no such Service.
func functionEnv(t *testing.T, m manifests, fn string) map[string]string {
	t.Helper()
	for _, s := range m.services {
		if s.Name != fn {
			continue
		}
		env := map[string]string{}
		for _, c := range s.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
		}
		return env
	}
	t.Fatalf("no Service %s", fn)
	return nil
}

// TestEveryWorkloadHasItsNetworkPolicy: council's namespace denies all
// traffic by default, and every Knative Service's pods are selected by one
// policy of their own that lets in the activator (or scale from zero
// breaks) and, for what receives events, the broker, and lets out DNS.
func TestEveryWorkloadHasItsNetworkPolicy(t *testing.T) {
	for _, dir := range deployables() {
		t.Run(dir, func(t *testing.T) {
			m := decode(t, render(t, dir))
			denyAll := false
			for _, np := range m.networkPolicies {
				if len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 &&
					slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
					slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) &&
					len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0 {
					denyAll = true
				}
			}
			if !denyAll {
				t.Errorf("%s: no default-deny NetworkPolicy (empty pod selector, Ingress and Egress, no rules)", dir)
			}
			for _, s := range m.services {
				pod := labels.Set(s.Spec.Template.Labels)
				var own []*networkingv1.NetworkPolicy
				for _, np := range m.networkPolicies {
					sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
					if err != nil {
						t.Fatalf("NetworkPolicy %s: %v", np.Name, err)
					}
					if !sel.Empty() && sel.Matches(pod) {
						own = append(own, np)
					}
				}
				if len(own) != 1 {
					t.Errorf("%s: Service %s's pods are selected by %d NetworkPolicies; want 1", dir, s.Name, len(own))
					continue
				}
				checkNetworkPolicy(t, s, own[0])
			}
		})
	}
}

func checkNetworkPolicy(t *testing.T, s *servingv1.Service, np *networkingv1.NetworkPolicy) {
	t.Helper()
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy %s: policyTypes %v; want Ingress and Egress", np.Name, np.Spec.PolicyTypes)
	}
	from := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		for _, peer := range rule.From {
			for _, ns := range namespacesOf(peer) {
				from[ns] = true
			}
		}
	}
	receivesEvents := s.Name != "rayexecutor"
	if !from["knative-serving"] {
		t.Errorf("NetworkPolicy %s does not let in the activator (knative-serving)", np.Name)
	}
	if from["knative-eventing"] != receivesEvents {
		t.Errorf("NetworkPolicy %s: ingress from knative-eventing %v; want %v", np.Name, from["knative-eventing"], receivesEvents)
	}
	dns := false
	for _, rule := range np.Spec.Egress {
		for _, peer := range rule.To {
			if slices.Contains(namespacesOf(peer), "kube-system") {
				for _, p := range rule.Ports {
					dns = dns || (p.Port != nil && p.Port.IntValue() == 53)
				}
			}
		}
	}
	if !dns {
		t.Errorf("NetworkPolicy %s does not let out DNS", np.Name)
	}
}

// namespacesOf lists the namespaces a peer names by kubernetes.io/metadata.name.
func namespacesOf(peer networkingv1.NetworkPolicyPeer) []string {
	if peer.NamespaceSelector == nil {
		return nil
	}
	var out []string
	if v, ok := peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ok {
		out = append(out, v)
	}
	for _, e := range peer.NamespaceSelector.MatchExpressions {
		if e.Key == "kubernetes.io/metadata.name" && e.Operator == metav1.LabelSelectorOpIn {
			out = append(out, e.Values...)
		}
	}
	return out
}
