// Package rayexecutor is council's drop-in for the old swe-ai-fleet Ray
// Executor: it serves the old gRPC API, fleet.ray_executor.v1.
// RayExecutorService (proto/, generated code in gen/), over h2c, as a thin
// translator (docs/adr/0009-grpc-facade.md).
//
// Submissions (ExecuteDeliberation, ExecuteBacklogReviewDeliberation)
// become ordinary deliberation.requested.v1 events, published the way every
// other producer publishes them (the broker stream, or K_SINK on Knative),
// so execute handles them like any CloudEvent; the answer's deliberation_id
// is council's deliberation id, the correlation id of the legacy messages.
// A retry within the idempotency window (the idempotency-key metadata, or
// a digest of the request) maps to the same deliberation. Queries
// (GetDeliberationStatus, GetStatus, GetActiveJobs) read the durable state
// execute's HTTP query routes read.
//
// The old fields: vllm_url is accepted and never used (the LLM endpoint is
// configuration); vllm_model and each agent's model must be allowed
// (COUNCIL_LLM_MODELS); prompt_template is honoured (an extra instruction in
// that agent's system prompt).
package rayexecutor
