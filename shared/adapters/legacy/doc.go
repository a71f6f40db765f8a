// Package legacy feeds the old swe-ai-fleet consumers during a migration:
// for every deliberation that ends it publishes, on NATS JetStream stream
// AGENT_RESPONSES, the one-message-per-agent responses the Ray Executor's
// workers published (agent.response.completed,
// agent.response.completed.backlog-review.role,
// agent.response.completed.task-extraction, agent.response.failed), each
// wrapped in the fleet's EventEnvelope.
//
// It keeps the subjects, the routing by metadata task_type and the payload
// field names, and fixes the old bugs: every agent gets a message (not only
// the first), with its own deterministic idempotency key
// (sha256 of "<event_type>:<deliberation id>:<agent id>", also the
// Nats-Msg-Id, so a re-publish is a duplicate the stream drops), the
// deliberation id as correlation id, the role as a plain string, the score
// and rank of council's ranking, and a deliberation where every agent failed
// is reported with agent.response.failed only. See
// docs/adr/0005-legacy-subjects.md.
//
// The format (subjects, envelope, idempotency keys, the pure mapping
// deliberation → messages) is council.dev/events/legacy; [Publisher] sends
// its messages and sets the stream up.
package legacy
