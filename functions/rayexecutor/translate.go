package rayexecutor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	pb "council.dev/functions/rayexecutor/gen/fleet/ray_executor/v1"
	"council.dev/shared/council"
)

// Values of metadata task_type the old callers send (ORIGINAL.md §8),
// compared without regard to case, '-' or '_'.
const (
	taskTypeBacklogReview     = "BACKLOG_REVIEW_ROLE"
	taskTypeBacklogReviewBare = "BACKLOG_REVIEW"
	taskTypeTaskExtraction    = "TASK_EXTRACTION"
	taskTypeTaskDerivation    = "TASK_DERIVATION"
	taskTypeDeliberation      = "DELIBERATION"
)

// submission is an old request in one shape: both RPCs carry the same
// fields but for their constraints message.
type submission struct {
	rpc         string
	taskID      string
	description string
	role        string
	storyID     string
	planID      string
	timeout     int32
	maxRetries  int32
	metadata    map[string]string
	agents      []*pb.Agent
	vllmURL     string
	vllmModel   string
	backlog     bool
}

func fromExecute(r *pb.ExecuteDeliberationRequest) submission {
	c := r.GetConstraints()
	return submission{
		rpc: "ExecuteDeliberation", taskID: r.GetTaskId(), description: r.GetTaskDescription(), role: r.GetRole(),
		storyID: c.GetStoryId(), planID: c.GetPlanId(), timeout: c.GetTimeoutSeconds(), maxRetries: c.GetMaxRetries(),
		metadata: c.GetMetadata(), agents: r.GetAgents(), vllmURL: r.GetVllmUrl(), vllmModel: r.GetVllmModel(),
	}
}

func fromBacklogReview(r *pb.ExecuteBacklogReviewDeliberationRequest) submission {
	c := r.GetConstraints()
	return submission{
		rpc: "ExecuteBacklogReviewDeliberation", taskID: r.GetTaskId(), description: r.GetTaskDescription(), role: r.GetRole(),
		storyID: c.GetStoryId(), timeout: c.GetTimeoutSeconds(), maxRetries: c.GetMaxRetries(),
		metadata: c.GetMetadata(), agents: r.GetAgents(), vllmURL: r.GetVllmUrl(), vllmModel: r.GetVllmModel(),
		backlog: true,
	}
}

// normTaskType returns a task_type upper-cased with '-' as '_'
// ("backlog-review" → "BACKLOG_REVIEW").
func normTaskType(v string) string {
	return strings.ReplaceAll(strings.ToUpper(strings.TrimSpace(v)), "-", "_")
}

// kindOf returns the kind of s: backlog review for the backlog RPC; else
// by metadata task_type (backlog review, task extraction, task derivation,
// deliberation); without one, a task id ending in ":task-extraction" is a
// task extraction (the old workers' rule) and anything else a deliberation.
func kindOf(s submission) (council.Kind, error) {
	if s.backlog {
		return council.KindBacklogReview, nil
	}
	switch tt := normTaskType(s.metadata["task_type"]); tt {
	case taskTypeBacklogReview, taskTypeBacklogReviewBare:
		return council.KindBacklogReview, nil
	case taskTypeTaskExtraction:
		return council.KindTaskExtraction, nil
	case taskTypeTaskDerivation:
		return council.KindTaskDerivation, nil
	case taskTypeDeliberation:
		return council.KindDeliberation, nil
	case "":
		if strings.HasSuffix(s.taskID, ":task-extraction") {
			return council.KindTaskExtraction, nil
		}
		return council.KindDeliberation, nil
	default:
		return "", council.Invalidf("metadata task_type %q is unknown (want BACKLOG_REVIEW_ROLE, TASK_EXTRACTION, TASK_DERIVATION "+
			"or DELIBERATION, in any case, or none)", s.metadata["task_type"])
	}
}

// task maps s to a council task, checking what the events' decoder does
// not know: the RPC's own rules and the models against allowed. Errors wrap
// council.ErrInvalid and name every problem found.
func (s submission) task(defaultModel string, allowed []string) (council.Task, error) {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if strings.TrimSpace(s.taskID) == "" {
		add("task_id is required")
	} else if s.backlog {
		if _, err := council.ParseBacklogReviewTaskID(s.taskID); err != nil {
			add("task_id %q: ExecuteBacklogReviewDeliberation wants the form ceremony-{id}:story-{id}:role-{ROLE}", s.taskID)
		}
	}
	if strings.TrimSpace(s.storyID) == "" {
		add("constraints.story_id is required")
	}
	kind, err := kindOf(s)
	if err != nil {
		add("%s", strings.TrimPrefix(err.Error(), council.ErrInvalid.Error()+": "))
	}
	if s.timeout < 0 {
		add("constraints.timeout_seconds must not be negative, got %d", s.timeout)
	}
	if s.maxRetries < 0 {
		add("constraints.max_retries must not be negative, got %d", s.maxRetries)
	}
	model := strings.TrimSpace(s.vllmModel)
	if model == "" {
		model = defaultModel
	} else if !slices.Contains(allowed, model) {
		add("vllm_model %q is not allowed (allowed: %s)", model, strings.Join(allowed, ", "))
	}
	t := council.Task{
		ID: s.taskID, Description: s.description, Role: s.role, Kind: kind, Model: model,
		Constraints: council.Constraints{
			StoryID: s.storyID, PlanID: s.planID, MaxRetries: council.DefaultMaxRetries,
		},
	}
	// proto3 cannot tell an absent number from 0: 0 means the default, as
	// in the old service ("no retries" cannot be asked for over gRPC).
	if s.timeout > 0 {
		t.Constraints.Timeout = time.Duration(s.timeout) * time.Second
	}
	if s.maxRetries > 0 {
		t.Constraints.MaxRetries = int(s.maxRetries)
	}
	if len(s.metadata) > 0 || s.backlog {
		t.Constraints.Metadata = make(map[string]string, len(s.metadata)+1)
		for k, v := range s.metadata {
			t.Constraints.Metadata[k] = v
		}
	}
	if s.backlog {
		// As the old service: the story id is also in the metadata.
		if _, ok := t.Constraints.Metadata["story_id"]; !ok {
			t.Constraints.Metadata["story_id"] = s.storyID
		}
	}
	for i, a := range s.agents {
		if a == nil {
			add("agents[%d] is empty", i)
			continue
		}
		if m := strings.TrimSpace(a.GetModel()); m != "" && !slices.Contains(allowed, m) {
			add("agents[%d].model %q is not allowed (allowed: %s)", i, m, strings.Join(allowed, ", "))
		}
		t.Agents = append(t.Agents, council.Agent{
			ID: a.GetId(), Role: a.GetRole(), Model: strings.TrimSpace(a.GetModel()), PromptTemplate: a.GetPromptTemplate(),
		})
	}
	if len(problems) > 0 {
		return council.Task{}, council.Invalidf("%s", strings.Join(problems, "; "))
	}
	return t, nil
}
