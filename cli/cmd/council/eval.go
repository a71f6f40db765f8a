package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"council.dev/cli/eval"
	"council.dev/shared/adapters/vllm"
	"council.dev/shared/council"
	"council.dev/shared/redact"
)

// evalCmd runs `council eval`: HumanEval problems × protocols against an
// OpenAI-compatible server, in-process (council.Engine), every protocol
// under the same token budget; a table, or -json.
func evalCmd(ctx context.Context, args []string, s streams) error {
	fl := newFlags("eval", "eval [flags]", s)
	llmURL := fl.String("llm", envOr(s.getenv, "COUNCIL_LLM_URL", "http://127.0.0.1:8088/v1"),
		"OpenAI-compatible base URL (default $COUNCIL_LLM_URL; scripts/llm-server.sh start serves one)")
	model := fl.String("model", envOr(s.getenv, "COUNCIL_LLM_MODEL", "council-tiny"), "model every agent asks for (default $COUNCIL_LLM_MODEL)")
	protocols := fl.String("protocols", "critique_revise,debate,vote,judge", "protocols to compare, comma-separated")
	tasks := fl.String("tasks", "humaneval:20", "task set: humaneval (all 164), humaneval:N (the first N), humaneval:N@SEED (N drawn with SEED)")
	dataset := fl.String("humaneval", envOr(s.getenv, "COUNCIL_HUMANEVAL", ".cache/humaneval/HumanEval.jsonl.gz"),
		"HumanEval file (default $COUNCIL_HUMANEVAL; scripts/humaneval.sh install puts it there)")
	agents := fl.Int("agents", 3, "agents per council")
	rounds := fl.Int("rounds", 1, "constraints.rounds (critique_revise and debate)")
	maxTokens := fl.Int("max-tokens", 256, "constraints.max_tokens: the cap of each completion")
	budget := fl.Int("budget", 16000, "constraints.max_total_tokens of every deliberation, the same for every protocol; 0: none")
	timeout := fl.Duration("timeout", 10*time.Minute, "deadline of one deliberation")
	parallel := fl.Int("parallel", 1, "deliberations at once (1 measures each makespan alone)")
	testTime := fl.Duration("test-time", eval.DefaultTimeLimit, "time limit of one run of a problem's tests")
	testMemory := fl.Int("test-memory", eval.DefaultMemoryLimit>>20, "memory limit of one run of a problem's tests, MiB")
	python := fl.String("python", eval.DefaultPython, "Python interpreter that runs the tests")
	asJSON := fl.Bool("json", false, "print the rows and every outcome as JSON")
	jsonOut := fl.String("json-out", "", "also write the JSON report to this file")
	if rest, err := parseFlags(fl, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return usagef("unexpected arguments %q", rest)
	}
	cfg := eval.Config{Agents: *agents, Rounds: *rounds, MaxTokens: *maxTokens, Budget: *budget, Model: *model,
		Timeout: *timeout, Parallel: *parallel, RunID: time.Now().UTC().Format("20060102T150405")}
	for _, p := range strings.Split(*protocols, ",") {
		proto := council.Protocol(strings.TrimSpace(p))
		if proto == "" || !proto.Valid() {
			return usagef("-protocols: %q is not a protocol (want critique_revise, debate, vote, judge)", p)
		}
		cfg.Protocols = append(cfg.Protocols, proto)
	}
	switch {
	case cfg.Agents < 1 || cfg.Agents > council.MaxAgents:
		return usagef("-agents %d: want 1 to %d", cfg.Agents, council.MaxAgents)
	case cfg.Budget < 0:
		return usagef("-budget %d: want 0 (none) or more", cfg.Budget)
	case *testMemory < 64:
		return usagef("-test-memory %d: want 64 MiB or more", *testMemory)
	}
	spec, err := eval.ParseTaskSpec(*tasks)
	if err != nil {
		return usagef("-tasks: %v", err)
	}
	all, err := eval.LoadHumanEval(*dataset)
	if err != nil {
		return err
	}
	llm, err := vllm.New(*llmURL, *model, vllm.WithAPIKey(s.getenv("COUNCIL_LLM_API_KEY")))
	if err != nil {
		return usagef("%v", err)
	}
	runner := &eval.Runner{LLM: llm, Sandbox: eval.Sandbox{
		Python: *python, TimeLimit: *testTime, MemoryLimit: int64(*testMemory) << 20,
	}}
	var mu sync.Mutex
	done, total := 0, 0
	runner.Progress = func(o eval.Outcome) {
		mu.Lock()
		defer mu.Unlock()
		done++
		fmt.Fprintf(s.err, "  %d/%d %s %s: passed %v, %d calls, %d tokens, %.1fs%s\n", done, total, o.Protocol, o.TaskID,
			o.Passed, o.Calls, o.Usage.TotalTokens, o.Makespan.Seconds(), stoppedNote(o))
	}
	problems := spec.Select(all)
	total = len(problems) * len(cfg.Protocols)
	fmt.Fprintf(s.err, "council eval: %d problems × %d protocols against %s (%s)\n", len(problems), len(cfg.Protocols), redact.URL(*llmURL), *model)
	outcomes, err := runner.Run(ctx, problems, cfg)
	if err != nil {
		return err
	}
	if *jsonOut != "" {
		var b bytes.Buffer
		if err := eval.WriteJSON(&b, outcomes, cfg); err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("-json-out: %w", err)
		}
	}
	if *asJSON {
		return eval.WriteJSON(s.out, outcomes, cfg)
	}
	return eval.WriteTable(s.out, eval.Summarize(outcomes), cfg)
}

// stoppedNote says why an outcome's deliberation ended early, if it did.
func stoppedNote(o eval.Outcome) string {
	switch {
	case o.Status != council.StatusCompleted:
		return " (" + o.Reason + ")"
	case o.Stopped != "":
		return " (stopped: " + o.Stopped + ")"
	}
	return ""
}
