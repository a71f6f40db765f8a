package kingress

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// TestManifest decodes config/kingress.yaml strictly into the API types the
// cluster would and checks that it agrees with the code: the class, the
// load balancer domain (the Service's own name), the port and the probe.
func TestManifest(t *testing.T) {
	data, err := os.ReadFile("config/kingress.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var (
		deploy  appsv1.Deployment
		svc     corev1.Service
		role    rbacv1.ClusterRole
		binding rbacv1.ClusterRoleBinding
		kinds   []string
	)
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, meta.Kind)
		var into any
		switch meta.Kind {
		case "Deployment":
			into = &deploy
		case "Service":
			into = &svc
		case "ClusterRole":
			into = &role
		case "ClusterRoleBinding":
			into = &binding
		case "Namespace":
			into = &corev1.Namespace{}
		case "ServiceAccount":
			into = &corev1.ServiceAccount{}
		default:
			t.Fatalf("unexpected kind %q", meta.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), into); err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if want := []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}

	if got := svc.Name + "." + svc.Namespace + ".svc.cluster.local"; got != DefaultDomain {
		t.Errorf("Service name %s, want DefaultDomain %s", got, DefaultDomain)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].TargetPort.String() != "http" {
		t.Errorf("Service ports = %+v, want one, http, 80 -> http", svc.Spec.Ports)
	}

	if r := deploy.Spec.Replicas; r == nil || *r != 1 {
		t.Errorf("replicas = %v, want 1", r)
	}
	c := deploy.Spec.Template.Spec.Containers[0]
	if c.Image != "ko://council.dev/knative/kingress/cmd/kingress" {
		t.Errorf("image = %s", c.Image)
	}
	for _, arg := range []string{"-addr=:8080", "-class=" + DefaultClass, "-domain=" + DefaultDomain} {
		if !slices.Contains(c.Args, arg) {
			t.Errorf("args %v lack %s", c.Args, arg)
		}
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8080 || c.Ports[0].Name != "http" {
		t.Errorf("container ports = %+v, want http 8080", c.Ports)
	}
	if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != HealthPath {
		t.Errorf("readiness probe = %+v, want GET %s", p, HealthPath)
	}
	if sc := deploy.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
		t.Errorf("pod security context = %+v, want runAsNonRoot, user 65532", sc)
	}
	if sa := deploy.Spec.Template.Spec.ServiceAccountName; binding.Subjects[0].Name != sa || binding.RoleRef.Name != role.Name {
		t.Errorf("binding %+v does not bind role %s to service account %s", binding, role.Name, sa)
	}

	can := func(resource, verb string) bool {
		for _, r := range role.Rules {
			if slices.Contains(r.APIGroups, "networking.internal.knative.dev") && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
				return true
			}
		}
		return false
	}
	for _, need := range [][2]string{{"ingresses", "list"}, {"ingresses", "watch"}, {"ingresses/status", "update"}} {
		if !can(need[0], need[1]) {
			t.Errorf("ClusterRole cannot %s %s", need[1], need[0])
		}
	}
}
