// Package localbroker runs a Knative Broker on one machine, configured by
// council's own manifests (package kustomized), so that the functions can be
// exercised on Knative's HTTP delivery contract without a cluster.
//
// It reproduces what the multi-tenant channel-based Broker over a
// NatsJetStreamChannel does for our manifests:
//
//   - Ingress: CloudEvents over HTTP, binary or structured, at
//     /<namespace>/<broker> (the broker-ingress path) and at /. An event is
//     validated (400 otherwise), given the knativearrivaltime extension,
//     persisted in a JetStream stream of its own and answered 202 only once
//     the publish is acknowledged; 5xx when it could not be persisted.
//   - Triggers: one durable JetStream consumer per Trigger over that stream,
//     with Knative's own exact-attribute filter (spec.filter.attributes).
//     spec.filters (CESQL and the new filter dialects) is not supported: New
//     and AddTrigger reject a Trigger that uses it.
//   - Delivery: each event goes in binary mode, with "Prefer: reply", to the
//     subscriber. A 2xx reply carrying an event puts that event back into the
//     broker. The Trigger's spec.delivery (else the Broker's) is applied as
//     Knative Eventing's dispatcher (pkg/kncloudevents, v1.15) reads it; see
//     deliveryFromSpec and shouldRetry.
//   - Dead letters: the original event, with the knativeerrordest,
//     knativeerrorcode and knativeerrordata extensions, to the dead-letter
//     sink. A dead letter the sink does not take is kept unacknowledged and
//     redelivered (to the sink only), and logged: nothing is dropped silently.
//   - PingSources whose sink is the broker send dev.knative.sources.ping
//     events on their schedule (robfig/cron, as Knative's mtping adapter).
//
// What it does not reproduce: OIDC tokens and EventPolicies, the broker TTL
// extension, the Retry-After handling of delivery.retryAfterMax, TLS, event
// type auto-creation, and the filter hop (broker-filter) as a separate
// process. Retries are JetStream redeliveries (NakWithDelay), so a retry
// survives a restart of the broker.
package localbroker
