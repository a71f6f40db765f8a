// Package council is the domain of council: a council of LLM agents that
// deliberates on a task. It holds the Task a deliberation works on, its
// Agents and Constraints, the Deliberation aggregate (generate → peer
// critique → revise → final review → ranking), the classified errors that
// drive retries, and the ports (Completer, Emitter, Store, TokenSink,
// JobRunner) that adapters implement.
//
// The package imports the standard library only; wire formats, SDKs and
// transports live in the events module and in the adapters.
package council
