package localknative

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// TriggerTo is a Trigger of the council Broker (namespace council) named
// name, sending the events of type eventType (every event when empty) to
// uri: what an Orchestrator or an observer adds to the manifests' own
// Triggers on a cluster.
func TriggerTo(name, eventType, uri string) (*eventingv1.Trigger, error) {
	u, err := apis.ParseURL(uri)
	if err != nil {
		return nil, err
	}
	tr := &eventingv1.Trigger{
		TypeMeta:   metav1.TypeMeta{APIVersion: "eventing.knative.dev/v1", Kind: "Trigger"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "council"},
		Spec:       eventingv1.TriggerSpec{Broker: "council", Subscriber: duckv1.Destination{URI: u}},
	}
	if eventType != "" {
		tr.Spec.Filter = &eventingv1.TriggerFilter{Attributes: eventingv1.TriggerFilterAttributes{"type": eventType}}
	}
	return tr, nil
}
