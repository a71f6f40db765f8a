// Package kustomized renders a kustomization in-process, as `kustomize build`
// does, and decodes every document strictly into the Go type the cluster
// would: Knative Serving and Eventing types and core Kubernetes ones.
//
// It is how code outside a cluster (the local Broker, the local Serving, the
// manifest tests) reads the deployment from the manifests themselves rather
// than repeating it.
package kustomized

import (
	"errors"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	eventingv1 "knative.dev/eventing/pkg/apis/eventing/v1"
	eventingv1alpha1 "knative.dev/eventing/pkg/apis/eventing/v1alpha1"
	sourcesv1 "knative.dev/eventing/pkg/apis/sources/v1"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered document.
type Object struct {
	APIVersion, Kind, Namespace, Name string
	// YAML is the document as kustomize wrote it.
	YAML []byte
}

// String names the object as "Kind namespace/name".
func (o Object) String() string {
	return fmt.Sprintf("%s %s/%s", o.Kind, o.Namespace, o.Name)
}

// Manifests are rendered documents decoded into the API types the cluster
// would decode them into, in the order kustomize wrote them.
type Manifests struct {
	Services        []*servingv1.Service
	Brokers         []*eventingv1.Broker
	Triggers        []*eventingv1.Trigger
	PingSources     []*sourcesv1.PingSource
	SinkBindings    []*sourcesv1.SinkBinding
	ConfigMaps      []*corev1.ConfigMap
	Namespaces      []*corev1.Namespace
	Secrets         []*corev1.Secret
	EventPolicies   []*eventingv1alpha1.EventPolicy
	NetworkPolicies []*networkingv1.NetworkPolicy
	// Jobs are run once per apply: council-setup, the NATS topology.
	Jobs []*batchv1.Job
}

// Load renders the kustomization in dir and decodes it. It fails when the
// kustomization does not build, renders nothing, or holds a document that
// does not decode strictly or whose kind council does not deploy.
func Load(dir string) (*Manifests, error) {
	objs, err := Render(dir)
	if err != nil {
		return nil, err
	}
	m, err := Decode(objs)
	if err != nil {
		return nil, fmt.Errorf("kustomized: %s: %w", dir, err)
	}
	return m, nil
}

// Render builds the kustomization in dir in-process, as `kustomize build
// dir` would, and returns its documents.
func Render(dir string) ([]Object, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomized: build %s: %w", dir, err)
	}
	objs := make([]Object, 0, len(res.Resources()))
	for _, r := range res.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomized: build %s: %s %s: %w", dir, r.GetKind(), r.GetName(), err)
		}
		objs = append(objs, Object{
			APIVersion: r.GetApiVersion(),
			Kind:       r.GetKind(),
			Namespace:  r.GetNamespace(),
			Name:       r.GetName(),
			YAML:       y,
		})
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("kustomized: build %s: no resources", dir)
	}
	return objs, nil
}

// Decode decodes every object strictly (an unknown or duplicate field is an
// error, as with kubectl's server-side field validation) into its Go type.
// The error joins one error per object that does not decode or whose kind
// council does not deploy.
func Decode(objs []Object) (*Manifests, error) {
	var m Manifests
	var errs []error
	for _, o := range objs {
		var err error
		switch o.APIVersion + "/" + o.Kind {
		case "serving.knative.dev/v1/Service":
			m.Services, err = decodeInto(o, m.Services)
		case "eventing.knative.dev/v1/Broker":
			m.Brokers, err = decodeInto(o, m.Brokers)
		case "eventing.knative.dev/v1/Trigger":
			m.Triggers, err = decodeInto(o, m.Triggers)
		case "sources.knative.dev/v1/PingSource":
			m.PingSources, err = decodeInto(o, m.PingSources)
		case "sources.knative.dev/v1/SinkBinding":
			m.SinkBindings, err = decodeInto(o, m.SinkBindings)
		case "v1/ConfigMap":
			m.ConfigMaps, err = decodeInto(o, m.ConfigMaps)
		case "v1/Namespace":
			m.Namespaces, err = decodeInto(o, m.Namespaces)
		case "v1/Secret":
			m.Secrets, err = decodeInto(o, m.Secrets)
		case "eventing.knative.dev/v1alpha1/EventPolicy":
			m.EventPolicies, err = decodeInto(o, m.EventPolicies)
		case "networking.k8s.io/v1/NetworkPolicy":
			m.NetworkPolicies, err = decodeInto(o, m.NetworkPolicies)
		case "batch/v1/Job":
			m.Jobs, err = decodeInto(o, m.Jobs)
		default:
			err = fmt.Errorf("unexpected kind %s %s", o.APIVersion, o.Kind)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", o, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &m, nil
}

// decodeInto strictly decodes o into a new T and appends it to list.
func decodeInto[T any](o Object, list []*T) ([]*T, error) {
	v := new(T)
	if err := yaml.UnmarshalStrict(o.YAML, v); err != nil {
		return list, fmt.Errorf("strict decode: %w", err)
	}
	return append(list, v), nil
}
