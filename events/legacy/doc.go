// Package legacy is the wire format of the old swe-ai-fleet, kept for its
// consumers during a migration: the one-message-per-agent responses the Ray
// Executor's workers published on stream AGENT_RESPONSES
// (agent.response.completed, agent.response.completed.backlog-review.role,
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
// is reported with agent.response.failed only. Next to the envelope, at its
// top level, each message repeats what the pre-envelope consumers (the
// Orchestrator's collector and pull consumer) read there: task_id,
// agent_id, role, story_id, num_agents, output, and error, error_type on
// failures; routing by task_type ignores case, '-' and '_'; a task
// derivation carries story_id, plan_id and result.proposal. See
// docs/adr/0005-legacy-subjects.md and docs/legacy-consumers.md (what each
// old consumer reads; package legacytest reads messages as they do).
//
// [Messages] is the pure mapping (ended deliberation → messages, the body of
// each the envelope as JSON); its JSON Schema is
// events/schemas/legacy.agent.response.v1.json, checked against the golden
// files under testdata/ by the tests here and by scripts/contract-check.sh
// (Ajv). The JetStream publisher that sends the messages is an adapter,
// council.dev/shared/adapters/legacy.
package legacy
