// Package knative holds council's Knative deployment and its tests.
//
// The manifests are kustomizations: base/ (namespace, configuration, the
// Broker on a NatsJetStreamChannel, the three function Services, the
// dead-letter sink, Triggers, the SinkBinding that gives execute its K_SINK,
// and the sweep PingSource), overlays/dev and overlays/prod, and platform/
// (the Knative Serving settings council needs from the cluster). README.md
// explains the choices and how to deploy.
//
// The package itself has no Go API; its subpackages do: kustomized renders
// a kustomization in-process and decodes each document into its API type,
// localbroker runs a Knative Broker and its Triggers on one machine,
// localserving runs Knative Services as local processes that scale from
// zero, and localknative runs council's function binaries on both,
// configured from our manifests, without a cluster.
//
// The package's tests render every kustomization in-process with
// kustomize's krusty, decode each document strictly into the API type the
// cluster would (Knative Serving and Eventing, core Kubernetes), run
// Knative's own defaulting and validation on it as its admission webhooks
// would, and check the event routing (one exact Trigger per consumed type,
// no reply loops) and the Services' contract with the function host.
package knative
