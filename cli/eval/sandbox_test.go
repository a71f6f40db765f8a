package eval_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"council.dev/cli/eval"
)

// problems loads the real HumanEval set: COUNCIL_HUMANEVAL, else where
// scripts/humaneval.sh install puts it. The tests fail, never skip, when
// it is missing.
func problems(t testing.TB) []eval.Problem {
	t.Helper()
	path := os.Getenv("COUNCIL_HUMANEVAL")
	if path == "" {
		path = filepath.Join("..", "..", ".cache", "humaneval", "HumanEval.jsonl.gz")
	}
	ps, err := eval.LoadHumanEval(path)
	if err != nil {
		t.Fatalf("%v (or set COUNCIL_HUMANEVAL=$(scripts/humaneval.sh path))", err)
	}
	return ps
}

// find returns the problem with id.
func find(t *testing.T, ps []eval.Problem, id string) eval.Problem {
	t.Helper()
	for _, p := range ps {
		if p.TaskID == id {
			return p
		}
	}
	t.Fatalf("no problem %s", id)
	return eval.Problem{}
}

// TestSandboxCanonicalSolutionsPass: the reference solution of every
// problem passes its tests in the sandbox, and an answer that raises fails.
func TestSandboxCanonicalSolutionsPass(t *testing.T) {
	ps := problems(t)
	if len(ps) != 164 {
		t.Fatalf("%d problems, want HumanEval's 164", len(ps))
	}
	var sb eval.Sandbox
	var (
		wg     sync.WaitGroup
		failed atomic.Int32
	)
	sem := make(chan struct{}, runtime.GOMAXPROCS(0)*2)
	for _, p := range ps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			v, err := sb.Check(t.Context(), p, p.Prompt+p.CanonicalSolution)
			if err != nil || !v.Passed {
				failed.Add(1)
				t.Errorf("%s: canonical solution: verdict %+v, error %v", p.TaskID, v, err)
			}
		})
	}
	wg.Wait()
	p := ps[0]
	v, err := sb.Check(t.Context(), p, p.Prompt+"    raise RuntimeError('wrong')\n")
	if err != nil || v.Passed || !strings.Contains(v.Reason, "RuntimeError") {
		t.Errorf("wrong answer: verdict %+v, error %v; want a failure that names RuntimeError", v, err)
	}
}

func TestSandboxLimits(t *testing.T) {
	ps := problems(t)
	p := find(t, ps, "HumanEval/0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	addr := ln.Addr().(*net.TCPAddr)
	t.Setenv("COUNCIL_EVAL_SECRET", "do-not-leak")
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")

	// Each body replaces the function of HumanEval/0; the ones that
	// should pass end with the canonical solution.
	canonical := p.CanonicalSolution
	tests := []struct {
		name     string
		body     string
		pass     bool
		timedOut bool
	}{
		{name: "canonical", body: canonical, pass: true},
		{name: "infinite loop", body: "    while True:\n        pass\n", timedOut: true},
		{name: "memory bomb", body: "    x = bytearray(4 << 30)\n" + canonical},
		{name: "memory bomb list", body: "    x = [0] * (1 << 31)\n" + canonical},
		{name: "connect", body: "    import socket\n    socket.create_connection(('127.0.0.1', " + strconv.Itoa(addr.Port) + "), timeout=2)\n" + canonical},
		{name: "raw socket", body: "    import _socket\n    s = _socket.socket()\n    s.connect(('127.0.0.1', " + strconv.Itoa(addr.Port) + "))\n" + canonical},
		{name: "urllib", body: "    import urllib.request\n    urllib.request.urlopen('http://127.0.0.1:" + strconv.Itoa(addr.Port) + "/', timeout=2)\n" + canonical},
		{name: "subprocess", body: "    import subprocess\n    subprocess.run(['true'])\n" + canonical},
		{name: "os.system", body: "    import os\n    if os.system('true') != 0: raise SystemExit(0)\n" + canonical},
		{name: "no secret in the environment", body: "    import os\n    assert 'COUNCIL_EVAL_SECRET' not in os.environ and 'HTTPS_PROXY' not in os.environ\n" + canonical, pass: true},
	}
	sb := eval.Sandbox{TimeLimit: 2 * time.Second, MemoryLimit: 256 << 20}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			v, err := sb.Check(ctx, p, p.Prompt+tt.body)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if v.Passed != tt.pass || v.TimedOut != tt.timedOut {
				t.Errorf("verdict %+v; want passed %v, timed out %v", v, tt.pass, tt.timedOut)
			}
		})
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the listener accepted %d connections from the sandbox, want none", n)
	}
}
