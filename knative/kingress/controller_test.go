package kingress

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrs "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	clientgotesting "k8s.io/client-go/testing"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/networking/pkg/client/clientset/versioned/fake"
	"knative.dev/pkg/apis"

	"council.dev/shared/counciltest"
)

// The controller tests run against the clientset's fake. The real-cluster
// check (Knative Serving, this controller and proxy, a Trigger delivering
// to a Knative Service) is `make cluster-test` (scripts/cluster.sh).

func ingress(name, class string, generation int64, host string) *v1alpha1.Ingress {
	return &v1alpha1.Ingress{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   "council",
			Name:        name,
			Generation:  generation,
			Annotations: map[string]string{networking.IngressClassAnnotationKey: class},
		},
		Spec: v1alpha1.IngressSpec{Rules: []v1alpha1.IngressRule{{
			Hosts:      []string{host},
			Visibility: v1alpha1.IngressVisibilityClusterLocal,
			HTTP: &v1alpha1.HTTPIngressRuleValue{Paths: []v1alpha1.HTTPIngressPath{{
				Splits: []v1alpha1.IngressBackendSplit{split(name+"-00001", 100, nil)},
			}}},
		}}},
	}
}

// fakeClient is the clientset's fake as client-go's own fakes present
// themselves: unable to stream an initial list as watch events (the
// fake generated for knative.dev/networking predates the method).
type fakeClient struct{ *fake.Clientset }

func (fakeClient) IsWatchListSemanticsUnSupported() bool { return true }

// startController runs a Controller on client until the test ends and
// returns its table once the informer has synced and its watch is open, so
// that changes the test makes are seen (the fake, unlike an API server,
// does not replay changes made before a watch starts).
func startController(t *testing.T, client *fake.Clientset, opts ...ControllerOption) *Table {
	t.Helper()
	watching := make(chan struct{})
	var once sync.Once
	client.PrependWatchReactor("ingresses", func(action clientgotesting.Action) (bool, watch.Interface, error) {
		w, err := client.Tracker().Watch(action.GetResource(), action.GetNamespace())
		once.Do(func() { close(watching) })
		return true, w, err
	})
	table := NewTable()
	c, err := NewController(fakeClient{client}, table, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	eventually(t, "informer synced", c.Synced)
	select {
	case <-watching:
	case <-time.After(10 * time.Second):
		t.Fatal("the controller did not open a watch")
	}
	return table
}

// eventually waits until cond holds (counciltest.Within) or fails.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !counciltest.Within(10*time.Second, 5*time.Millisecond, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

func get(t *testing.T, client *fake.Clientset, name string) *v1alpha1.Ingress {
	t.Helper()
	ing, err := client.NetworkingV1alpha1().Ingresses("council").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ing
}

func routesTo(t *testing.T, table *Table, host string) string {
	t.Helper()
	p, err := table.Match(host, "/", http.Header{})
	if err != nil {
		return ""
	}
	return p.Splits[0].ServiceName
}

func ready(ing *v1alpha1.Ingress) bool {
	return ing.IsReady() && ing.Status.ObservedGeneration == ing.Generation
}

func TestControllerServesItsClass(t *testing.T) {
	const domain = "kingress.test-system.svc.cluster.local"
	ours := ingress("generate", DefaultClass, 1, "generate.council.svc.cluster.local")
	theirs := ingress("critique", "kourier.ingress.networking.knative.dev", 1, "critique.council.svc.cluster.local")
	client := fake.NewSimpleClientset(ours, theirs)
	table := startController(t, client, WithDomain(domain))
	// Ready (Synced) means the existing Ingresses are already routed.
	if !table.Has("council/generate") {
		t.Error("controller reported synced before loading an existing ingress")
	}

	eventually(t, "our ingress ready", func() bool { return ready(get(t, client, "generate")) })
	got := get(t, client, "generate")
	lb := &v1alpha1.LoadBalancerStatus{Ingress: []v1alpha1.LoadBalancerIngressStatus{{DomainInternal: domain}}}
	if diff := cmp.Diff(lb, got.Status.PublicLoadBalancer); diff != "" {
		t.Errorf("public load balancer (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(lb, got.Status.PrivateLoadBalancer); diff != "" {
		t.Errorf("private load balancer (-want +got):\n%s", diff)
	}
	for _, c := range []string{"Ready", "NetworkConfigured", "LoadBalancerReady"} {
		if cond := got.Status.GetCondition(apis.ConditionType(c)); cond == nil || cond.Status != corev1.ConditionTrue {
			t.Errorf("condition %s = %+v, want True", c, cond)
		}
	}
	if got := routesTo(t, table, "generate.council.svc.cluster.local:80"); got != "generate-00001" {
		t.Errorf("table routes generate to %q, want generate-00001", got)
	}

	// The other class's Ingress is neither routed nor touched.
	if got := routesTo(t, table, "critique.council.svc.cluster.local"); got != "" {
		t.Errorf("table routes another class's ingress to %q", got)
	}
	if diff := cmp.Diff(theirs.Status, get(t, client, "critique").Status); diff != "" {
		t.Errorf("another class's ingress status changed (-before +after):\n%s", diff)
	}
	statusUpdates := 0
	for _, a := range client.Actions() {
		u, ok := a.(clientgotesting.UpdateAction)
		if !ok {
			continue
		}
		switch name := u.GetObject().(*v1alpha1.Ingress).Name; {
		case name == "critique":
			t.Errorf("controller updated another class's ingress: %v", a)
		case u.GetSubresource() == "status":
			statusUpdates++
		}
	}
	// Its own update comes back as an event; an unchanged status is not
	// written again.
	if statusUpdates != 1 {
		t.Errorf("%d status updates of our ingress, want 1", statusUpdates)
	}
}

func TestControllerFollowsChanges(t *testing.T) {
	client := fake.NewSimpleClientset()
	table := startController(t, client)
	ings := client.NetworkingV1alpha1().Ingresses("council")
	ctx := context.Background()

	// Created after start.
	if _, err := ings.Create(ctx, ingress("generate", DefaultClass, 1, "generate.council"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "created ingress ready", func() bool { return ready(get(t, client, "generate")) })
	if got := routesTo(t, table, "generate.council"); got != "generate-00001" {
		t.Fatalf("table routes generate to %q, want generate-00001", got)
	}

	// A new generation: new backend, new host; the old host leaves.
	ing := get(t, client, "generate")
	ing.Generation = 2
	ing.Spec.Rules[0].Hosts = []string{"generate.council.svc"}
	ing.Spec.Rules[0].HTTP.Paths[0].Splits[0].ServiceName = "generate-00002"
	if _, err := ings.Update(ctx, ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "generation 2 observed", func() bool {
		ing := get(t, client, "generate")
		return ready(ing) && ing.Status.ObservedGeneration == 2
	})
	if got := routesTo(t, table, "generate.council.svc"); got != "generate-00002" {
		t.Errorf("after update, table routes generate.council.svc to %q, want generate-00002", got)
	}
	if _, err := table.Match("generate.council", "/", http.Header{}); !errors.Is(err, ErrNoHost) {
		t.Errorf("after update, old host: err = %v, want ErrNoHost", err)
	}

	// Deleted: it leaves the table.
	if err := ings.Delete(ctx, "generate", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted ingress out of the table", func() bool { return !table.Has("council/generate") })
	if _, err := table.Match("generate.council.svc", "/", http.Header{}); !errors.Is(err, ErrNoHost) {
		t.Errorf("after delete: err = %v, want ErrNoHost", err)
	}
}

func TestControllerRetriesConflicts(t *testing.T) {
	client := fake.NewSimpleClientset(ingress("generate", DefaultClass, 3, "generate.council"))
	var mu sync.Mutex
	conflicts := 2
	client.PrependReactor("update", "ingresses", func(action clientgotesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		if action.GetSubresource() != "status" || conflicts == 0 {
			return false, nil, nil
		}
		conflicts--
		return true, nil, apierrs.NewConflict(v1alpha1.Resource("ingresses"), "generate", errors.New("the object has been modified"))
	})
	startController(t, client)
	eventually(t, "ready after conflicts", func() bool { return ready(get(t, client, "generate")) })
	mu.Lock()
	defer mu.Unlock()
	if conflicts != 0 {
		t.Errorf("%d conflicts left unreturned", conflicts)
	}
}

func TestControllerLeavesClassChange(t *testing.T) {
	client := fake.NewSimpleClientset(ingress("generate", DefaultClass, 1, "generate.council"))
	table := startController(t, client)
	eventually(t, "ingress routed", func() bool { return table.Has("council/generate") })
	// The fake clientset's UpdateStatus writes the whole object: change the
	// class only once the controller has written its status, or that write
	// can put the old class back.
	eventually(t, "ingress ready", func() bool { return ready(get(t, client, "generate")) })
	ing := get(t, client, "generate")
	ing.Annotations[networking.IngressClassAnnotationKey] = "istio.ingress.networking.knative.dev"
	if _, err := client.NetworkingV1alpha1().Ingresses("council").Update(context.Background(), ing, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ingress of another class out of the table", func() bool { return !table.Has("council/generate") })
}
