package eval

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

//go:embed guard.py
var guardPy []byte

// Defaults of a Sandbox.
const (
	DefaultPython      = "python3"
	DefaultTimeLimit   = 10 * time.Second
	DefaultMemoryLimit = 512 << 20
	// outputTail bounds the output a Verdict keeps.
	outputTail = 2 << 10
)

// Sandbox runs a candidate program with a problem's tests in a Python
// subprocess, under limits:
//   - python3 -I (isolated: no PYTHON* variables, no user site, the
//     script's directory not on the path), in a temporary directory removed
//     afterwards, with an environment of its own (PATH, HOME and TMPDIR in
//     that directory, LANG): no variable of the caller's environment
//     (secrets, proxies) reaches it;
//   - a wall-clock limit: at TimeLimit the whole process group is killed
//     (SIGKILL), and the CPU time limit is a backstop;
//   - an address-space limit (RLIMIT_AS, MemoryLimit): an allocation past it
//     raises MemoryError;
//   - no network and no child processes: guard.py replaces Python's socket
//     and process functions before the candidate runs.
//
// It keeps model-written code from hanging, exhausting or reaching out of
// the run by accident; it is not a security boundary against a program
// written to escape (guard.py says what it leaves open).
type Sandbox struct {
	// Python is the interpreter (DefaultPython when empty).
	Python string
	// TimeLimit bounds one run (DefaultTimeLimit when 0).
	TimeLimit time.Duration
	// MemoryLimit bounds the address space in bytes (DefaultMemoryLimit when 0).
	MemoryLimit int64
}

// Verdict is the outcome of one run of a problem's tests.
type Verdict struct {
	Passed bool
	// Reason says why it failed (the end of the output, "timeout"); empty
	// when it passed.
	Reason string
	// TimedOut reports that the time limit killed it.
	TimedOut bool
}

// Check runs check(entry_point) from p's tests against program, a complete
// Python program defining p.EntryPoint (Program builds one from an
// answer). A failing test, an exception, a timeout or a limit hit is a
// Verdict that did not pass; the error is for a run that could not be made
// (no interpreter, no temporary directory) or ctx ending.
func (s Sandbox) Check(ctx context.Context, p Problem, program string) (Verdict, error) {
	dir, err := os.MkdirTemp("", "council-eval-")
	if err != nil {
		return Verdict{}, fmt.Errorf("eval: sandbox: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }() // best effort: a temporary directory
	source := program + "\n\n" + p.Test + "\n\ncheck(" + p.EntryPoint + ")\n"
	if err := os.WriteFile(filepath.Join(dir, "candidate.py"), []byte(source), 0o600); err != nil {
		return Verdict{}, fmt.Errorf("eval: sandbox: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "guard.py"), guardPy, 0o600); err != nil {
		return Verdict{}, fmt.Errorf("eval: sandbox: %w", err)
	}
	limit := s.timeLimit()
	rctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cpu := int(limit/time.Second) + 1
	cmd := exec.CommandContext(rctx, s.python(), "-I", "guard.py",
		strconv.FormatInt(s.memoryLimit(), 10), strconv.Itoa(cpu), "candidate.py")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + dir, "TMPDIR=" + dir, "LANG=C.UTF-8"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group: a program that got a child past the guard
	// does not outlive the limit either.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return Verdict{Passed: true}, nil
	case ctx.Err() != nil:
		return Verdict{}, fmt.Errorf("eval: sandbox %s: %w", p.TaskID, ctx.Err())
	case rctx.Err() != nil:
		return Verdict{Reason: fmt.Sprintf("timeout: killed after %s", limit), TimedOut: true}, nil
	case errors.As(err, &exit):
		return Verdict{Reason: fmt.Sprintf("%v: %s", err, tail(out.Bytes()))}, nil
	default:
		return Verdict{}, fmt.Errorf("eval: sandbox %s: run %s: %w", p.TaskID, s.python(), err)
	}
}

func (s Sandbox) python() string {
	if s.Python == "" {
		return DefaultPython
	}
	return s.Python
}

func (s Sandbox) timeLimit() time.Duration {
	if s.TimeLimit <= 0 {
		return DefaultTimeLimit
	}
	return s.TimeLimit
}

func (s Sandbox) memoryLimit() int64 {
	if s.MemoryLimit <= 0 {
		return DefaultMemoryLimit
	}
	return s.MemoryLimit
}

// tail is the end of a program's output, at most outputTail bytes.
func tail(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > outputTail {
		b = append([]byte("…"), b[len(b)-outputTail:]...)
	}
	return string(b)
}
