package test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"council.dev/cli/stack"
	"council.dev/events"
	"council.dev/functions/execute"
	"council.dev/shared/adapters/rayjobs/raytest"
	"council.dev/shared/adapters/vllm/vllmtest"
	"council.dev/shared/council"
	"council.dev/shared/counciltest"
)

// withMetadata returns e with constraints.metadata set to md.
func withMetadata(t *testing.T, e event.Event, md map[string]any) event.Event {
	t.Helper()
	var data map[string]any
	if err := json.Unmarshal(e.Data(), &data); err != nil {
		t.Fatal(err)
	}
	data["constraints"].(map[string]any)["metadata"] = md
	if err := e.SetData(event.ApplicationJSON, data); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestRayLargeRequestUploadsNothingNew: jobs carry the deliberation id
// only, so a request of 150 KB runs in the same working directory package
// as a small one (uploaded once, for the first job), and both complete.
func TestRayLargeRequestUploadsNothingNew(t *testing.T) {
	s := startRayStack(t)
	small := onBackend(t, request(t, 32), "ray")
	large := onBackend(t, request(t, 32), "ray")
	large.SetID(large.ID() + "-large")
	note := strings.Repeat("context of the story. ", 7000) // about 150 KB
	large = withMetadata(t, large, map[string]any{"note": note})
	ctx := context.Background()
	dirs := map[string]string{}
	for _, e := range []event.Event{small, large} {
		id := send(t, s, e)
		sid := execute.SubmissionID(id, 1)
		eventually(t, time.Minute, "job "+sid+" on Ray", func() bool {
			info, err := s.Ray.Get(ctx, sid)
			if err != nil {
				return false
			}
			dirs[id] = info.WorkingDir
			return info.WorkingDir != ""
		})
		c := await(t, s, id)
		checkCompleted(t, c, "task-42")
	}
	var got []string
	for _, d := range dirs {
		got = append(got, d)
	}
	if len(got) != 2 || got[0] != got[1] || !strings.HasPrefix(got[0], "gcs://_ray_pkg_") {
		t.Errorf("working directories of the small and the large request's jobs: %v; want one package for both", dirs)
	}
}

// startRayPoolStack starts the stack with backend ray in the warm pool: one
// pool job of 4 workers; a worker silent for 5 s loses its deliberation.
func startRayPoolStack(t *testing.T) *stack.Stack {
	t.Helper()
	s, err := stack.Start(context.Background(), stack.Config{
		LLMURL: vllmtest.URL(t), LLMModel: vllmtest.Model(), StoreDir: t.TempDir(),
		LLMTimeout: 2 * time.Minute, SweepEvery: time.Second,
		RayAddress: raytest.Address(t), AgentDir: buildAgent(t),
		RayPool: 1, RayPoolWorkers: 4, RayPoolAckWait: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		s.Close()
		stopPool(t, s, 1)
	})
	return s
}

// stopPool stops the pool's jobs of slots 0 to slots-1 and deletes them
// once Ray lets them go (JobDeleteAfter after their end): the pool's jobs
// outlive no test.
func stopPool(t testing.TB, s *stack.Stack, slots int) {
	t.Helper()
	ctx := context.Background()
	for slot := range slots {
		sid := execute.PoolJobID(slot)
		_ = s.Ray.Stop(ctx, sid)
		var info council.JobInfo
		deleted := counciltest.Within(time.Minute, 200*time.Millisecond, func() bool {
			var err error
			if info, err = s.Ray.Get(ctx, sid); err != nil {
				return true // gone, or never started
			}
			return info.State.Terminal() && time.Since(info.EndTime) >= council.JobDeleteAfter && s.Ray.Delete(ctx, sid) == nil
		})
		if !deleted {
			t.Errorf("pool job %s not deleted within a minute: %+v", sid, info)
		}
	}
}

// TestRayPoolEndToEnd: deliberations run in the pool's long-lived job
// (no Ray job of their own); a worker killed mid-deliberation (its Ray job
// stopped) loses nothing: execute starts the pool job again, the queue gives
// the deliberation to the new worker, and it completes once.
func TestRayPoolEndToEnd(t *testing.T) {
	s := startRayPoolStack(t)
	ctx := context.Background()
	pool := execute.PoolJobID(0)
	eventually(t, 2*time.Minute, "pool job "+pool+" running", func() bool {
		info, err := s.Ray.Get(ctx, pool)
		return err == nil && info.State == council.JobRunning
	})

	// Two at once, through the pool.
	var wg sync.WaitGroup
	ids := make([]string, 2)
	for i := range ids {
		ids[i] = send(t, s, onBackend(t, request(t, 32), "ray"))
	}
	for _, id := range ids {
		wg.Go(func() { checkCompleted(t, await(t, s, id), "task-42") })
	}
	wg.Wait()
	for _, id := range ids {
		d, _, err := s.Store.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if d.Job == nil || !d.Job.Pool || d.Job.SubmissionID != execute.PoolRunID(id, 1) {
			t.Errorf("deliberation %s: job %+v; want its pool run", id, d.Job)
		}
		if _, err := s.Ray.Get(ctx, execute.SubmissionID(id, 1)); err == nil {
			t.Errorf("deliberation %s has a Ray job of its own", id)
		}
	}
	eventually(t, 30*time.Second, "pool runs recorded SUCCEEDED", func() bool {
		for _, id := range ids {
			d, _, err := s.Store.Get(ctx, id)
			if err != nil || d.Job.State != council.JobSucceeded {
				return false
			}
		}
		return true
	})

	// A worker killed mid-deliberation.
	id := send(t, s, onBackend(t, request(t, 48), "ray"))
	eventually(t, time.Minute, "deliberation "+id+" taken by a worker", func() bool {
		d, _, err := s.Store.Get(ctx, id)
		return err == nil && d.Job != nil && d.Job.State == council.JobRunning
	})
	if err := s.Ray.Stop(ctx, pool); err != nil {
		t.Fatalf("stop the pool job: %v", err)
	}
	c := await(t, s, id)
	checkCompleted(t, c, "task-42")
	d, _, err := s.Store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("worker killed: completed %s after it started (pool run %s: %s)",
		d.FinishedAt.Sub(d.StartedAt).Round(time.Millisecond), d.Job.SubmissionID, d.Job.Message)
	eventually(t, 2*time.Minute, "pool job "+pool+" running again", func() bool {
		info, err := s.Ray.Get(ctx, pool)
		return err == nil && info.State == council.JobRunning
	})
	if counts := countEvents(t, s, id); counts[events.TypeDeliberationCompleted] != 1 {
		t.Errorf("events of the deliberation whose worker was killed: %v; want 1 completed", counts)
	}
}
