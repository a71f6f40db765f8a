"""The old fleet's callers of the Ray Executor, in their own language.

Drives council's rayexecutor function with a gRPC client generated from
functions/rayexecutor/proto by grpcio-tools (the test generates it into a
temporary directory), as the planning service (a backlog-review ceremony:
3 roles), the task-derivation service and the planning health check do,
and prints what it saw as one JSON document.

usage: fleet_client.py GENERATED_DIR ADDRESS SCENARIO_JSON
"""

import json
import sys
import time

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402
from fleet.ray_executor.v1 import ray_executor_pb2 as pb  # noqa: E402
from fleet.ray_executor.v1 import ray_executor_pb2_grpc as rpc  # noqa: E402

TERMINAL = ("completed", "failed", "not_found")


def code_of(err):
    return err.code().name if isinstance(err, grpc.RpcError) else type(err).__name__


def main():
    address, scenario = sys.argv[2], json.loads(sys.argv[3])
    out = {"backlog": [], "derivation": {}, "retry": {}, "invalid": {}, "status": {}, "jobs": [], "final": {}}
    with grpc.insecure_channel(address) as channel:
        stub = rpc.RayExecutorServiceStub(channel)

        # Planning: StartBacklogReviewCeremonyUseCase, one submission per role,
        # agents agent-{role}-{NNN}, the 5 s deadline the callers use.
        ceremony, story = scenario["ceremony_id"], scenario["story_id"]
        for role in scenario["roles"]:
            task_id = f"ceremony-{ceremony}:story-{story}:role-{role}"
            req = pb.ExecuteBacklogReviewDeliberationRequest(
                task_id=task_id,
                task_description=f"[{task_id}] Review story {story} from {role} perspective\nStory: rate-limit the public API.",
                role=role,
                constraints=pb.BacklogReviewTaskConstraints(
                    story_id=story, timeout_seconds=300, max_retries=3,
                    metadata={"ceremony_id": ceremony, "task_type": "BACKLOG_REVIEW_ROLE", "trigger": "backlog_review_done"},
                ),
                agents=[pb.Agent(id=f"agent-{role.lower()}-{i + 1:03d}", role=role, model=scenario["model"], prompt_template="")
                        for i in range(scenario["agents_per_role"])],
                vllm_url=scenario["vllm_url"], vllm_model=scenario["model"],
            )
            resp = stub.ExecuteBacklogReviewDeliberation(req, timeout=5.0)
            out["backlog"].append({"task_id": resp.task_id, "deliberation_id": resp.deliberation_id,
                                   "status": resp.status, "message": resp.message, "role": role})

        # planning-ceremony-processor: task extraction through plain
        # ExecuteDeliberation (plan_id "", task_type TASK_EXTRACTION).
        ext_id = f"ceremony-{ceremony}:story-{story}:task-extraction"
        ext = stub.ExecuteDeliberation(pb.ExecuteDeliberationRequest(
            task_id=ext_id,
            task_description=f"Extract the concrete, ordered tasks of story {story} from the deliberations of the review.",
            role="TASK_EXTRACTOR",
            constraints=pb.TaskConstraints(story_id=story, plan_id="", timeout_seconds=300, max_retries=3,
                                           metadata={"ceremony_id": ceremony, "task_type": "TASK_EXTRACTION"}),
            agents=[pb.Agent(id="agent-task-extractor-001", role="TASK_EXTRACTOR", model=scenario["model"], prompt_template="")],
            vllm_url=scenario["vllm_url"], vllm_model=scenario["model"],
        ), timeout=5.0)
        out["extraction"] = {"task_id": ext.task_id, "deliberation_id": ext.deliberation_id, "status": ext.status}

        # Task derivation: RayExecutorAdapter.submit_task_derivation. The first
        # try gives up at once (a client timeout); the retries must not start a
        # second deliberation.
        plan = scenario["plan_id"]
        derive = pb.ExecuteDeliberationRequest(
            task_id=f"derive-{plan}",
            task_description=f"Derive the implementation tasks of plan {plan} for story {story}: rate-limit the public API.",
            role="SYSTEM",
            constraints=pb.TaskConstraints(story_id=story, plan_id=plan, timeout_seconds=300, max_retries=2,
                                           metadata={"story_id": story, "task_type": "TASK_DERIVATION"}),
            agents=[pb.Agent(id="task-deriver-001", role="SYSTEM", model=scenario["model"], prompt_template="")],
            vllm_url=scenario["vllm_url"], vllm_model=scenario["model"],
        )
        try:
            first = stub.ExecuteDeliberation(derive, timeout=0.001)
            out["retry"]["first"] = first.deliberation_id
        except grpc.RpcError as err:
            out["retry"]["first_error"] = code_of(err)
        second = stub.ExecuteDeliberation(derive, timeout=5.0)
        third = stub.ExecuteDeliberation(derive, timeout=5.0)
        out["retry"]["second"], out["retry"]["third"] = second.deliberation_id, third.deliberation_id
        out["derivation"] = {"task_id": second.task_id, "deliberation_id": second.deliberation_id, "status": second.status}

        # Validation errors are INVALID_ARGUMENT with the message.
        bad = pb.ExecuteDeliberationRequest()
        bad.CopyFrom(derive)
        bad.vllm_model = "gpt-unknown"
        try:
            stub.ExecuteDeliberation(bad, timeout=5.0)
            out["invalid"] = {"code": "OK"}
        except grpc.RpcError as err:
            out["invalid"] = {"code": code_of(err), "details": err.details()}

        out["jobs"] = [{"job_id": j.job_id, "task_id": j.task_id, "role": j.role, "status": j.status}
                       for j in stub.GetActiveJobs(pb.GetActiveJobsRequest(), timeout=5.0).jobs]

        # Follow every deliberation with GetDeliberationStatus until it ends.
        ids = [b["deliberation_id"] for b in out["backlog"]] + [out["derivation"]["deliberation_id"], out["extraction"]["deliberation_id"]]
        deadline = time.monotonic() + scenario["timeout_seconds"]
        pending = set(ids)
        while pending and time.monotonic() < deadline:
            for did in sorted(pending):
                st = stub.GetDeliberationStatus(pb.GetDeliberationStatusRequest(deliberation_id=did), timeout=5.0)
                if st.status in TERMINAL:
                    pending.discard(did)
                    res = None
                    if st.HasField("result"):
                        r = st.result
                        res = {"agent_id": r.agent_id, "proposal": r.proposal, "reasoning": r.reasoning,
                               "score": r.score, "metadata": dict(r.metadata)}
                    out["final"][did] = {"status": st.status, "error_message": st.error_message, "result": res}
            if pending:
                time.sleep(0.5)
        for did in pending:
            out["final"][did] = {"status": "timeout"}

        st = stub.GetStatus(pb.GetStatusRequest(include_stats=True), timeout=5.0)
        s = st.stats
        out["status"] = {"status": st.status, "uptime_seconds": st.uptime_seconds,
                         "total": s.total_deliberations, "active": s.active_deliberations,
                         "completed": s.completed_deliberations, "failed": s.failed_deliberations,
                         "average_ms": s.average_execution_time_ms}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
