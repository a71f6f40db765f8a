// Package kingress is a minimal Knative networking layer (a KIngress
// implementation) for council's test cluster. It is test infrastructure: it
// is not shipped in any function image and is not meant for production.
//
// Every Knative networking layer (net-kourier, net-istio, net-contour)
// needs Envoy, which the test machine cannot get. Without one, a Knative
// Service's URL (http://generate.council.svc.cluster.local) answers nothing,
// so Eventing Triggers and dead-letter sinks that point at a Knative Service
// cannot deliver. This package stands in for that layer, in one process:
//
//   - Controller watches networking.internal.knative.dev/v1alpha1 Ingresses
//     in every namespace, keeps those whose networking.knative.dev/ingress.class
//     annotation names our class (DefaultClass), loads their rules into a
//     Table and then marks them Ready, with both load balancers set to the
//     proxy Service's cluster-local name (DefaultDomain). Knative Serving
//     then points each Service's ExternalName at that name.
//   - Proxy is an http.Handler (a net/http/httputil.ReverseProxy) that routes
//     each request by the Table: host, path prefix and exact header matches
//     pick a path, the path's weighted splits pick a backend, and the request
//     goes to http://<service>.<namespace>.svc.cluster.local:<port> with the
//     rule's headers appended. HTTP/2 requests (h2c, for gRPC) are forwarded
//     as h2c, HTTP/1 as HTTP/1; responses are flushed as they stream.
//   - NewServer returns the listener's http.Server: HTTP/1.1 and cleartext
//     HTTP/2 on one port, no read or write deadline, so requests of up to
//     Knative's 15 minutes are not cut.
//
// TLS, retries, timeouts per route and HTTPOption redirects are not
// implemented; council's test cluster uses none of them.
//
// The command cmd/kingress wires the three together; config/kingress.yaml
// deploys it. Knative Serving's config-network must name our class
// (ingress-class: council.ingress.networking.knative.dev).
package kingress
