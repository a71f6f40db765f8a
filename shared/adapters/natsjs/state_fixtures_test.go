package natsjs_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"council.dev/events"
	"council.dev/shared/adapters/natsjs"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

var updateState = flag.Bool("update-state", false,
	"write testdata/state/*.json anew from today's encoding (only when the stored format changes on purpose)")

// stateFixtures builds, deterministically, the deliberations whose stored
// form testdata/state holds: what execute keeps in the KV bucket at each
// point of a deliberation's life.
func stateFixtures(t *testing.T) map[string]*council.Deliberation {
	t.Helper()
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	mk := func(id string, edit func(*council.Task)) *council.Deliberation {
		task := counciltest.Task()
		// The final review of the ring, as every build before issue 11
		// ran it (the fixtures of older versions hold it); "aggregation"
		// has the review by all pairs.
		task.Constraints.FinalReview = council.FinalReviewPeers
		if edit != nil {
			edit(&task)
		}
		d, err := council.New(id, task, t0)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	running := mk("dlb-state-running", nil) // just accepted: outbox full
	completed := mk("dlb-state-completed", nil)
	if err := counciltest.Finish(completed, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	failed := mk("dlb-state-failed", nil)
	failed.Fail("timeout after 600s", t0.Add(10*time.Minute))
	ray := mk("dlb-state-ray", func(task *council.Task) { task.Backend = council.BackendRay })
	ray.Job = &council.JobRef{SubmissionID: "dlb-state-ray-1", Attempt: 1, State: council.JobRunning, SubmittedAt: t0.Add(time.Second)}
	// A job that failed, its logs recorded and the job deleted from Ray;
	// and a pool run being queued.
	rayEnded := mk("dlb-state-ray-ended", func(task *council.Task) { task.Backend = council.BackendRay })
	rayEnded.BeginJob("dlb-state-ray-ended-1", 1, t0)
	rayEnded.JobSubmitted("dlb-state-ray-ended-1", council.JobInfo{State: council.JobRunning})
	rayEnded.ObserveJob("dlb-state-ray-ended-1", council.JobFailed, "exit code 1", t0.Add(50*time.Second))
	rayEnded.RecordJobLogs("dlb-state-ray-ended-1", "council-agent: deliberation dlb-state-ray-ended failed: llm: connection refused")
	rayEnded.Fail("ray job dlb-state-ray-ended-1 FAILED (attempt 1, max_retries 0): exit code 1", t0.Add(time.Minute))
	rayEnded.Acknowledge(council.OutboxFailed)
	rayEnded.Outbox = nil // as decoding gives it back
	rayEnded.JobDeleted("dlb-state-ray-ended-1")
	pool := mk("dlb-state-pool", func(task *council.Task) { task.Backend = council.BackendRay })
	pool.BeginPoolRun("pool-dlb-state-pool-1", 1, t0)
	extraction := mk("dlb-state-extraction", func(task *council.Task) {
		task.Kind = council.KindTaskExtraction
		task.Agents = task.Agents[:1]
		task.Constraints.PlanID = ""
	})
	if err := counciltest.Finish(extraction, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Control of a running deliberation (issue 12): cancelled mid-run, a
	// budget that ended the rounds early, a review gate waiting after one
	// feedback round.
	cancelled := mk("dlb-state-cancelled", nil)
	cancelled.Cancel("the story was dropped", t0.Add(2*time.Second))
	budget := mk("dlb-state-budget", func(task *council.Task) { task.Constraints.MaxCalls = 8 })
	if err := counciltest.Finish(budget, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	review := mk("dlb-state-review", func(task *council.Task) { task.Constraints.Review = council.ReviewBeforeFinal })
	for _, step := range []func() error{
		func() error { return finishToGate(review, t0.Add(time.Second)) },
		func() error {
			_, err := review.Decide(council.ReviewDecision{Decision: council.DecisionFeedback, Feedback: "Say how the counters survive a failover.", Reviewer: "ana"}, t0.Add(time.Hour))
			return err
		},
		func() error { return finishToGate(review, t0.Add(time.Hour+time.Second)) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	// Answers that say when their LLM call started (issue 13: the queue
	// wait of the page's timeline).
	started := mk("dlb-state-started", nil)
	if err := finishStarted(started, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Issue 11: a final review by all pairs ranked by Borda, critiques
	// that state their confidence, an agreement score.
	aggregation := mk("dlb-state-aggregation", func(task *council.Task) {
		task.Constraints.FinalReview, task.Constraints.Aggregation = council.FinalReviewAll, council.AggregationBorda
	})
	if err := finishConfident(aggregation, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	return withProtocolFixtures(t, mk, map[string]*council.Deliberation{
		"running": running, "completed": completed, "failed": failed, "ray": ray, "extraction": extraction,
		"ray-ended": rayEnded, "pool": pool, "cancelled": cancelled, "budget": budget, "review": review,
		"started": started, "aggregation": aggregation,
	})
}

// finishStarted answers d's work until it ends, each answer started 40 ms
// after its work was requested.
func finishStarted(d *council.Deliberation, now time.Time) error {
	for !d.Status.Terminal() {
		keys := slices.Clone(d.Outbox)
		if len(keys) == 0 {
			return fmt.Errorf("deliberation %s waits with nothing to send", d.ID)
		}
		for _, k := range keys {
			d.Acknowledge(k)
			w, ok := d.Work[k]
			if !ok {
				continue
			}
			var err error
			if w.Kind == council.WorkProposal {
				p := counciltest.ProposalFor(*w)
				p.StartedAt = w.RequestedAt.Add(40 * time.Millisecond)
				_, err = d.RecordProposal(k, p, now)
			} else {
				c := counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric)
				c.StartedAt = w.RequestedAt.Add(40 * time.Millisecond)
				_, err = d.RecordCritique(k, c, now)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// finishToGate answers d's work until it waits at its review gate.
func finishToGate(d *council.Deliberation, now time.Time) error {
	for !d.AwaitingReview() && !d.Status.Terminal() {
		keys := slices.Clone(d.Outbox)
		for _, k := range keys {
			d.Acknowledge(k)
			w, ok := d.Work[k]
			if !ok {
				continue
			}
			var err error
			if w.Kind == council.WorkProposal {
				_, err = d.RecordProposal(k, counciltest.ProposalFor(*w), now)
			} else {
				_, err = d.RecordCritique(k, counciltest.CritiqueFor(*w, d.Task.Constraints.Rubric), now)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// v2Only names the fixtures of states that only builds writing version 2
// can hold (the job lifecycle of ADR 10; cancel, budgets and the review
// gate of issue 12; the start times of LLM calls of issue 13).
var v2Only = map[string]bool{"ray-ended": true, "pool": true, "cancelled": true, "budget": true, "review": true, "started": true,
	"aggregation": true, "protocols": true, "judging": true}

// TestStoredStateFixturesStillDecode reads stored state through the real
// store: testdata/state/unversioned, what builds before the versioned format
// wrote (frozen: running systems hold such values), testdata/state/v1, the
// whole deliberation in one versioned value, and testdata/state/v2, what
// this build writes: a header and its records, every value checked against
// state.deliberation.v2.json (v1 and v2 rewritten with -update-state when
// the format changes on purpose). A change of the stored format must keep
// decoding all three, or this test fails.
func TestStoredStateFixturesStillDecode(t *testing.T) {
	for _, version := range []string{"unversioned", "v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			e := newEnv(t) // a bucket of its own: the fixtures share ids
			ctx := ctxTimeout(t)
			kv, err := e.js.KeyValue(ctx, natsjs.DefaultBucket)
			if err != nil {
				t.Fatal(err)
			}
			s, err := natsjs.NewStore(kv)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range stateFixtures(t) {
				if v2Only[name] && version != "v2" {
					continue // states older builds never wrote
				}
				path := filepath.Join("testdata", "state", version, name+".json")
				if *updateState && version != "unversioned" {
					writeStateFixture(t, path, version, want)
					continue
				}
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (write the fixtures with go test -run %s -update-state)", err, t.Name())
				}
				values := map[string]json.RawMessage{want.ID: raw}
				if version == "v2" { // the header and its records, by key
					if err := json.Unmarshal(raw, &values); err != nil {
						t.Fatal(err)
					}
					schema, _ := events.Schema("state.deliberation.v2")
					v, err := events.CompileSchema("state.deliberation.v2.json", schema)
					if err != nil {
						t.Fatal(err)
					}
					for k, value := range values {
						if err := v.Validate(value); err != nil {
							t.Errorf("%s: value %s does not validate against state.deliberation.v2.json: %v", name, k, err)
						}
					}
				}
				for k, v := range values {
					if _, err := kv.Create(ctx, k, v); err != nil {
						t.Fatal(err)
					}
				}
				got, _, err := s.Get(ctx, want.ID)
				if err != nil {
					t.Fatalf("%s: stored state no longer decodes: %v", name, err)
				}
				if version == "unversioned" {
					// Written before calls were counted and the prompt
					// cache measured: read as 0.
					want = want.Clone()
					want.Calls = 0
					if want.Result != nil {
						want.Result.PromptCache = council.PromptCache{}
					}
				}
				if version == "unversioned" {
					want = writtenBeforeIssue11(want)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s: stored state decodes differently (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

// writeStateFixture writes want in stored format version (v1: the value;
// v2: an object of the header and every record by KV key) to path.
func writeStateFixture(t *testing.T, path, version string, want *council.Deliberation) {
	t.Helper()
	var b []byte
	var err error
	if version == "v1" {
		b, err = events.EncodeStateVersion(want, 1)
	} else {
		header, records, encErr := events.NewStateCodec(0).Encode(want)
		if encErr != nil {
			t.Fatal(encErr)
		}
		// Stored compressed when large; the fixture keeps the JSON, which
		// the store reads too.
		if header, encErr = events.StateHeaderJSON(header); encErr != nil {
			t.Fatal(encErr)
		}
		values := map[string]json.RawMessage{want.ID: header}
		for _, r := range records {
			values[want.ID+"."+r.Key] = r.Data
		}
		b, err = json.MarshalIndent(values, "", "  ")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeIndexesRunningDeliberations: state written before the index
// existed (the v1 fixtures: no index keys) is indexed once by
// EnsureIndexed, so the sweep sees what was running at the upgrade.
func TestUpgradeIndexesRunningDeliberations(t *testing.T) {
	e := newEnv(t)
	ctx := ctxTimeout(t)
	kv, err := e.js.KeyValue(ctx, natsjs.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range stateFixtures(t) {
		if v2Only[name] {
			continue // no build before the index wrote such a state
		}
		raw, err := os.ReadFile(filepath.Join("testdata", "state", "v1", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kv.Create(ctx, d.ID, raw); err != nil {
			t.Fatal(err)
		}
	}
	s, err := natsjs.OpenStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if active, err := s.Active(ctx); err != nil || len(active) != 0 {
		t.Fatalf("before: Active = %d, %v; want none (no index yet)", len(active), err)
	}
	for range 2 { // the second call finds the mark
		if err := s.EnsureIndexed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	active, err := s.Active(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, d := range active {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	// Those that owe something: running, or their end not acknowledged.
	want := []string{}
	for name, d := range stateFixtures(t) {
		if d.Owes() && !v2Only[name] {
			want = append(want, d.ID)
		}
	}
	slices.Sort(want)
	if len(want) == 0 || !slices.Equal(ids, want) {
		t.Errorf("after EnsureIndexed: active %v, want %v", ids, want)
	}
}
