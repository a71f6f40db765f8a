package rayexecutor_test

import (
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "council.dev/functions/rayexecutor/gen/fleet/ray_executor/v1"
)

// oldContract is fleet.ray_executor.v1 as the old service defined it
// (ORIGINAL.md §2.1): message → "field=number type", and the RPCs.
var oldContract = map[string][]string{
	"ExecuteDeliberationRequest": {"task_id=1 string", "task_description=2 string", "role=3 string",
		"constraints=4 TaskConstraints", "agents=5 repeated Agent", "vllm_url=6 string", "vllm_model=7 string"},
	"ExecuteBacklogReviewDeliberationRequest": {"task_id=1 string", "task_description=2 string", "role=3 string",
		"constraints=4 BacklogReviewTaskConstraints", "agents=5 repeated Agent", "vllm_url=6 string", "vllm_model=7 string"},
	"ExecuteDeliberationResponse":   {"task_id=1 string", "deliberation_id=2 string", "status=3 string", "message=4 string"},
	"GetDeliberationStatusRequest":  {"deliberation_id=1 string"},
	"GetDeliberationStatusResponse": {"status=1 string", "result=2 DeliberationResult", "error_message=3 string"},
	"GetStatusRequest":              {"include_stats=1 bool"},
	"GetStatusResponse":             {"status=1 string", "uptime_seconds=2 int64", "stats=3 RayExecutorStats"},
	"TaskConstraints": {"story_id=1 string", "plan_id=2 string", "timeout_seconds=3 int32", "max_retries=4 int32",
		"metadata=5 map<string,string>"},
	"BacklogReviewTaskConstraints": {"story_id=1 string", "timeout_seconds=2 int32", "max_retries=3 int32",
		"metadata=4 map<string,string>"},
	"Agent": {"id=1 string", "role=2 string", "model=3 string", "prompt_template=4 string"},
	"DeliberationResult": {"agent_id=1 string", "proposal=2 string", "reasoning=3 string", "score=4 float",
		"metadata=5 map<string,string>"},
	"RayExecutorStats": {"total_deliberations=1 int64", "active_deliberations=2 int64", "completed_deliberations=3 int64",
		"failed_deliberations=4 int64", "average_execution_time_ms=5 float"},
	"GetActiveJobsRequest":  {},
	"GetActiveJobsResponse": {"jobs=1 repeated JobInfo"},
	"JobInfo": {"job_id=1 string", "name=2 string", "status=3 string", "submission_id=4 string", "role=5 string",
		"task_id=6 string", "start_time=7 Timestamp", "end_time=8 Timestamp", "runtime=9 string"},
}

var oldRPCs = []string{
	"ExecuteBacklogReviewDeliberation(ExecuteBacklogReviewDeliberationRequest) ExecuteDeliberationResponse",
	"ExecuteDeliberation(ExecuteDeliberationRequest) ExecuteDeliberationResponse",
	"GetActiveJobs(GetActiveJobsRequest) GetActiveJobsResponse",
	"GetDeliberationStatus(GetDeliberationStatusRequest) GetDeliberationStatusResponse",
	"GetStatus(GetStatusRequest) GetStatusResponse",
}

func kindOf(f protoreflect.FieldDescriptor) string {
	name := func(f protoreflect.FieldDescriptor) string {
		if f.Message() != nil {
			return string(f.Message().Name())
		}
		return f.Kind().String()
	}
	switch {
	case f.IsMap():
		return "map<" + name(f.MapKey()) + "," + name(f.MapValue()) + ">"
	case f.IsList():
		return "repeated " + name(f)
	}
	return name(f)
}

// TestProtoIsTheOldContract checks the generated code against the old
// service's contract: package, service, RPCs, messages, field names,
// numbers and types, so an old client's bytes mean the same here.
func TestProtoIsTheOldContract(t *testing.T) {
	file := pb.File_fleet_ray_executor_v1_ray_executor_proto
	if file.Package() != "fleet.ray_executor.v1" {
		t.Errorf("package %s", file.Package())
	}
	got := map[string][]string{}
	msgs := file.Messages()
	for i := range msgs.Len() {
		m := msgs.Get(i)
		fields := []string{}
		for j := range m.Fields().Len() {
			f := m.Fields().Get(j)
			fields = append(fields, string(f.Name())+"="+strconv.Itoa(int(f.Number()))+" "+kindOf(f))
		}
		got[string(m.Name())] = fields
	}
	if diff := cmp.Diff(oldContract, got); diff != "" {
		t.Errorf("messages (-old contract +generated):\n%s", diff)
	}
	if file.Services().Len() != 1 || file.Services().Get(0).FullName() != "fleet.ray_executor.v1.RayExecutorService" {
		t.Fatalf("services: want fleet.ray_executor.v1.RayExecutorService alone")
	}
	var rpcs []string
	methods := file.Services().Get(0).Methods()
	for i := range methods.Len() {
		m := methods.Get(i)
		rpcs = append(rpcs, string(m.Name())+"("+string(m.Input().Name())+") "+string(m.Output().Name()))
	}
	sort.Strings(rpcs)
	if diff := cmp.Diff(oldRPCs, rpcs); diff != "" {
		t.Errorf("RPCs (-old contract +generated):\n%s", diff)
	}
}

// TestGeneratedCodeIsFromTheProto: the checked-in .proto declares the same
// messages and field numbers as the old contract, which the generated code
// matches (TestProtoIsTheOldContract): a .proto edited without `make proto`,
// or the other way round, fails one of the two.
func TestGeneratedCodeIsFromTheProto(t *testing.T) {
	b, err := os.ReadFile("proto/fleet/ray_executor/v1/ray_executor.proto")
	if err != nil {
		t.Fatal(err)
	}
	src := regexp.MustCompile(`//[^\n]*`).ReplaceAllString(string(b), "")
	fromProto := map[string][]string{}
	for _, m := range regexp.MustCompile(`(?s)message (\w+) \{(.*?)\}`).FindAllStringSubmatch(src, -1) {
		fields := []string{}
		for _, f := range regexp.MustCompile(`(\w+) = (\d+);`).FindAllStringSubmatch(m[2], -1) {
			fields = append(fields, f[1]+"="+f[2])
		}
		fromProto[m[1]] = fields
	}
	want := map[string][]string{}
	for name, fields := range oldContract {
		names := []string{}
		for _, f := range fields {
			names = append(names, strings.Fields(f)[0])
		}
		want[name] = names
	}
	if diff := cmp.Diff(want, fromProto); diff != "" {
		t.Errorf("the .proto (-old contract +proto):\n%s", diff)
	}
}
