// Package localserving runs Knative Services as local processes that scale
// from zero, so that the shipped function binaries can be driven over
// Knative's HTTP contract without a cluster.
//
// Each Service added gets a stable URL, a local HTTP listener that plays
// Knative Serving's activator and queue-proxy: a request that finds no ready
// instance starts one (the binary the caller names, with PORT, K_SERVICE,
// K_CONFIGURATION and K_REVISION set as Knative sets them) and is held until
// the container's readiness probe answers, then proxied.
//
// Reproduced from Knative Serving (knative.dev/serving v0.42.2), read from
// the Service's revision template after Knative's own defaulting
// (Service.SetDefaults):
//   - the concurrency target: Knative's resources.ResolveMetricTarget on the
//     autoscaling annotations and containerConcurrency, with the
//     config-autoscaler defaults of autoscaler/config (a target of 100 when
//     containerConcurrency is 0, a target utilization of 0.7; execute's
//     target 40 and containerConcurrency 50 give 28 per instance);
//   - min-scale and max-scale (PodAutoscaler.ScaleBounds), the annotations
//     checked by Knative's autoscaling.ValidateAnnotations;
//   - containerConcurrency as a hard limit per instance (0: none), requests
//     beyond it queued in the activator, up to a queue size (Knative's
//     activator breaker: 10000), 503 beyond;
//   - timeoutSeconds (504 when a request, its queueing included, runs
//     longer; Knative's default 300 s when unset) and
//     responseStartTimeoutSeconds (504 when the instance has not started
//     its answer by then);
//   - the readiness probe: an HTTP GET of its path and headers, or the TCP
//     probe Knative defaults to, polled every 50 ms (the queue-proxy's
//     aggressive probing) until it answers 2xx or 3xx;
//   - an instance that exits or is killed: its requests in flight are
//     answered 502, it is removed, and the next request starts another.
//
// Simplified, and documented so: scaling up starts instances at once when
// the requests in flight and queued exceed target × instances (Knative
// averages over a stable window of 60 s and a panic window); scaling down
// stops an instance that has had no request in flight for the idle window
// (default 60 s; Knative's stable window of 60 s plus a scale-to-zero grace
// of 30 s), never below min-scale. Not reproduced: the rps metric and the
// HPA class (Add refuses them), initial-scale (a new Service starts with
// min-scale instances, not one), scale-down-delay, the panic mode,
// target-burst-capacity (the activator always stays in the path), liveness
// probes and readiness after the first success, exec and gRPC probes,
// idleTimeoutSeconds, traffic splitting between revisions, TLS, and the
// container's image, resources and security context: the caller says which
// binary runs, with which environment.
//
// Each Service's statistics (Stats) measure what Knative users feel: the
// time a request waited for an instance to become ready (a cold start in
// the event path) against a warm request's latency, and exec → the first
// successful readiness probe. Instances run in process groups of their own;
// Close stops them with SIGTERM and, after a grace, SIGKILL.
package localserving
