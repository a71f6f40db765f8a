package counciltest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"council.dev/shared/council"
)

// CompleterContract describes the Completer under test.
type CompleterContract struct {
	// New returns the Completer under test.
	New func(t *testing.T) council.Completer
	// Model is a model the Completer serves; Disallowed one it must refuse.
	Model, Disallowed string
	// Parallel says that the Completer serves concurrent calls at once (a
	// server with several slots, continuous batching): the token streams of
	// calls started together then interleave. A Completer that answers at
	// once (the fake) leaves it false.
	Parallel bool
}

// TestCompleter is the contract every council.Completer passes: the fake
// and the vllm adapter against a real OpenAI-compatible server run it.
func TestCompleter(t *testing.T, c CompleterContract) {
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	messages := []council.Message{
		{Role: "system", Content: "You are a member of a council of software engineering agents."},
		{Role: "user", Content: "Write your proposal for a rate limiter."},
	}
	t.Run("completion has content and usage", func(t *testing.T) {
		got, err := c.New(t).Complete(ctx(t), council.CompletionRequest{Model: c.Model, Messages: messages, Temperature: 0.7, MaxTokens: 16})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if strings.TrimSpace(got.Content) == "" || got.Usage.CompletionTokens == 0 {
			t.Errorf("completion %+v: want content and completion tokens", got)
		}
	})
	t.Run("streamed tokens add up to the content", func(t *testing.T) {
		var streamed strings.Builder
		got, err := c.New(t).Complete(ctx(t), council.CompletionRequest{
			Model: c.Model, Messages: messages, Temperature: 0.7, MaxTokens: 16,
			OnToken: func(s string) { streamed.WriteString(s) },
		})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if streamed.Len() == 0 || streamed.String() != got.Content {
			t.Errorf("streamed %q, content %q: want the same, non-empty", streamed.String(), got.Content)
		}
	})
	t.Run("structured output follows the critique schema", func(t *testing.T) {
		rubric := []string{"correctness", "clarity"}
		s := council.CritiqueSchema(rubric)
		got, err := c.New(t).Complete(ctx(t), council.CompletionRequest{
			Model: c.Model, Messages: messages, Temperature: 0.2, MaxTokens: council.CritiqueMaxTokens, Schema: &s,
		})
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		if _, err := council.ParseCritique(got.Content, rubric); err != nil {
			t.Errorf("structured output %q: %v", got.Content, err)
		}
	})
	t.Run("concurrent calls each get their own stream", func(t *testing.T) {
		concurrentCalls(t, c, ctx(t))
	})
	t.Run("a model outside the allow-list is invalid", func(t *testing.T) {
		_, err := c.New(t).Complete(ctx(t), council.CompletionRequest{Model: c.Disallowed, Messages: messages, MaxTokens: 4})
		if !errors.Is(err, council.ErrInvalid) {
			t.Errorf("Complete with model %q: err %v, want ErrInvalid", c.Disallowed, err)
		}
	})
}

// concurrentCalls starts three streamed calls together (a council's three
// agents) and checks that each gets its own text. With c.Parallel it also
// checks that the server ran them at once: the order in which tokens
// arrived shows at least one call's first token before another call's last
// one. A server that answers one call after the other delivers each call's
// tokens in one block and fails; two of the three calls overlapping is
// enough, so that other users of a shared server's slots do not matter.
// A small model writes a short answer in a tenth of a second, less than the
// time a busy machine may take to start the three requests, so a round
// without overlap is tried again, up to three rounds: a server that serves
// one call at a time fails all three.
func concurrentCalls(t *testing.T, c CompleterContract, ctx context.Context) {
	const rounds = 3
	completer := c.New(t)
	var seen [][]int
	for range rounds {
		arrived := concurrentRound(t, c, ctx, completer)
		if t.Failed() || !c.Parallel || overlapped(arrived) {
			return
		}
		seen = append(seen, arrived)
	}
	t.Errorf("in none of %d rounds did two concurrent calls overlap: tokens arrived call by call %v; the server serves one call at a time", rounds, seen)
}

// concurrentRound runs three streamed calls at once and returns the call
// index of every token, in arrival order.
func concurrentRound(t *testing.T, c CompleterContract, ctx context.Context, completer council.Completer) []int {
	t.Helper()
	const calls = 3
	var (
		mu      sync.Mutex
		arrived []int
		wg      sync.WaitGroup
		texts   [calls]strings.Builder
		results [calls]council.Completion
		errs    [calls]error
	)
	for i := range calls {
		wg.Go(func() {
			results[i], errs[i] = completer.Complete(ctx, council.CompletionRequest{
				Model: c.Model, Temperature: 0.7, MaxTokens: 96,
				Messages: []council.Message{
					{Role: "system", Content: "You are a member of a council of software engineering agents."},
					{Role: "user", Content: fmt.Sprintf("Agent %d: write your proposal for a rate limiter.", i)},
				},
				OnToken: func(s string) {
					texts[i].WriteString(s)
					mu.Lock()
					arrived = append(arrived, i)
					mu.Unlock()
				},
			})
		})
	}
	wg.Wait()
	for i := range calls {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if texts[i].Len() == 0 || texts[i].String() != results[i].Content {
			t.Errorf("call %d: streamed %q, content %q: want the same, non-empty", i, texts[i].String(), results[i].Content)
		}
	}
	return arrived
}

// overlapped reports whether one call's first token came before another
// call's last one.
func overlapped(arrived []int) bool {
	first, last := map[int]int{}, map[int]int{}
	for pos, i := range arrived {
		if _, ok := first[i]; !ok {
			first[i] = pos
		}
		last[i] = pos
	}
	for a := range last {
		for b := range last {
			if a != b && first[b] < last[a] && first[a] <= first[b] {
				return true // b started streaming while a was still streaming
			}
		}
	}
	return false
}

// JobRunnerContract describes the JobRunner under test.
type JobRunnerContract struct {
	// New returns the JobRunner under test.
	New func(t *testing.T) council.JobRunner
	// LongJob returns the spec of a job that runs until it is stopped, with
	// a submission id no other test uses.
	LongJob func(t *testing.T, name string) council.JobSpec
	// Within bounds how long a stopped job may take to report it.
	Within time.Duration
}

// TestJobRunner is the contract every council.JobRunner passes: the
// in-memory fake and the rayjobs adapter against a real Ray head run it.
func TestJobRunner(t *testing.T, c JobRunnerContract) {
	ctx := context.Background()
	t.Run("an unknown job is not found", func(t *testing.T) {
		spec := c.LongJob(t, "unknown")
		if _, err := c.New(t).Get(ctx, spec.SubmissionID); !errors.Is(err, council.ErrNotFound) {
			t.Errorf("Get(never submitted): err %v, want ErrNotFound", err)
		}
	})
	t.Run("the logs of an unknown job are not found", func(t *testing.T) {
		spec := c.LongJob(t, "unknown-logs")
		if _, err := c.New(t).Logs(ctx, spec.SubmissionID); !errors.Is(err, council.ErrNotFound) {
			t.Errorf("Logs(never submitted): err %v, want ErrNotFound", err)
		}
	})
	t.Run("submit is idempotent and stop ends the job", func(t *testing.T) {
		r := c.New(t)
		spec := c.LongJob(t, "contract")
		first, err := r.Submit(ctx, spec)
		if err != nil {
			t.Fatalf("Submit: %v", err)
		}
		t.Cleanup(func() { _ = r.Stop(context.Background(), spec.SubmissionID) })
		again, err := r.Submit(ctx, spec)
		if err != nil {
			t.Fatalf("second Submit of %s: %v, want the first job", spec.SubmissionID, err)
		}
		if first.SubmissionID != spec.SubmissionID || again.SubmissionID != spec.SubmissionID {
			t.Errorf("submission ids %q, %q; want %q twice", first.SubmissionID, again.SubmissionID, spec.SubmissionID)
		}
		if info, err := r.Get(ctx, spec.SubmissionID); err != nil || info.SubmissionID != spec.SubmissionID {
			t.Fatalf("Get after Submit: %+v, %v", info, err)
		}
		if err := r.Stop(ctx, spec.SubmissionID); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		deadline := time.Now().Add(c.Within)
		for {
			info, err := r.Get(ctx, spec.SubmissionID)
			if err != nil {
				t.Fatalf("Get after Stop: %v", err)
			}
			if info.State.Terminal() {
				if info.State == council.JobSucceeded {
					t.Errorf("a stopped long job ended %s", info.State)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job still %s %s after Stop", info.State, c.Within)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err := r.Stop(ctx, spec.SubmissionID); err != nil {
			t.Errorf("Stop of an ended job: %v, want no error", err)
		}
		if _, err := r.Logs(ctx, spec.SubmissionID); err != nil {
			t.Errorf("Logs of a stopped job: %v, want its output", err)
		}
	})
}
