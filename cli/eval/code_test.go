package eval_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"council.dev/cli/eval"
)

// TestProgramFromAnswerShapes: the answers a model gives — the whole
// function in a fenced block, after prose; the body alone, indented or
// not; the bare function — all become a program that passes, and prose
// around the code does not get into it.
func TestProgramFromAnswerShapes(t *testing.T) {
	ps := problems(t)
	p := find(t, ps, "HumanEval/2") // truncate_number: return number % 1.0
	whole := p.Prompt + p.CanonicalSolution
	tests := []struct{ name, answer string }{
		{"fenced function after prose", "Here is my answer.\n\n```python\n" + whole + "```\nIt works because…"},
		{"two blocks, the function last", "```\nprint('example')\n```\n\n```python\n" + whole + "```"},
		{"fenced body", "```python\n" + p.CanonicalSolution + "```"},
		{"unindented body", "return number % 1.0\n"},
		{"bare function", whole},
	}
	var sb eval.Sandbox
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			program := eval.Program(p, tt.answer)
			if strings.Contains(program, "Here is") || strings.Contains(program, "works because") {
				t.Errorf("prose in the program:\n%s", program)
			}
			v, err := sb.Check(t.Context(), p, program)
			if err != nil || !v.Passed {
				t.Errorf("verdict %+v, error %v; program:\n%s", v, err, program)
			}
		})
	}
}

func TestParseTaskSpec(t *testing.T) {
	tests := []struct {
		in      string
		want    eval.TaskSpec
		wantErr bool
	}{
		{in: "humaneval", want: eval.TaskSpec{Set: "humaneval"}},
		{in: "humaneval:20", want: eval.TaskSpec{Set: "humaneval", N: 20}},
		{in: "humaneval:20@7", want: eval.TaskSpec{Set: "humaneval", N: 20, Seed: 7, Sampled: true}},
		{in: "mbpp:20", wantErr: true},
		{in: "humaneval:0", wantErr: true},
		{in: "humaneval:x", wantErr: true},
		{in: "humaneval:5@", wantErr: true},
	}
	for _, tt := range tests {
		got, err := eval.ParseTaskSpec(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: error %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && got != tt.want {
			t.Errorf("%q: got %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSelect(t *testing.T) {
	ps := problems(t)
	first := eval.TaskSpec{Set: "humaneval", N: 3}.Select(ps)
	if len(first) != 3 || first[0].TaskID != "HumanEval/0" || first[2].TaskID != "HumanEval/2" {
		t.Errorf("first 3: %v", ids(first))
	}
	a := eval.TaskSpec{Set: "humaneval", N: 10, Seed: 1, Sampled: true}.Select(ps)
	b := eval.TaskSpec{Set: "humaneval", N: 10, Seed: 1, Sampled: true}.Select(ps)
	c := eval.TaskSpec{Set: "humaneval", N: 10, Seed: 2, Sampled: true}.Select(ps)
	if len(a) != 10 || !slices.Equal(ids(a), ids(b)) || slices.Equal(ids(a), ids(c)) {
		t.Errorf("sampled: seed 1 %v, again %v, seed 2 %v; want 10, the same for a seed, another for another", ids(a), ids(b), ids(c))
	}
	if all := (eval.TaskSpec{Set: "humaneval"}).Select(ps); len(all) != 164 {
		t.Errorf("all: %d problems", len(all))
	}
}

func ids(ps []eval.Problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.TaskID
	}
	return out
}

func TestLoadHumanEvalRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := dir + "/" + name
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for name, body := range map[string]string{
		"empty.jsonl":   "",
		"broken.jsonl":  `{"task_id": "x", `,
		"missing.jsonl": `{"task_id": "x", "prompt": "def f():\n"}`,
	} {
		if _, err := eval.LoadHumanEval(write(name, body)); err == nil {
			t.Errorf("%s: loaded, want an error", name)
		}
	}
	if _, err := eval.LoadHumanEval(dir + "/absent.jsonl.gz"); err == nil || !strings.Contains(err.Error(), "scripts/humaneval.sh install") {
		t.Errorf("absent file: error %v, want one that says how to install", err)
	}
}
