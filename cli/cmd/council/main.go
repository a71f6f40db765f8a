// Command council is the developer CLI of council.
//
//	council dev        run the local stack, send a deliberation fixture, print the ranked result
//	council send       send one CloudEvent (a fixture, a file or stdin) to a function, the broker or JetStream
//	council watch      follow the events, progress and token streams of deliberations on NATS
//	council status     one deliberation, from execute's GET /deliberations/{id}
//	council rerank     a completed deliberation ranked again with another aggregation (GET /deliberations/{id}/ranking)
//	council jobs       the running deliberations, from execute's GET /jobs
//	council stats      execute's health and statistics, from GET /status
//	council dlq        list, show and replay the dead letters of the JetStream transport
//	council cancel     end a running deliberation (deliberation.cancel)
//	council review     decide at a deliberation's review gate (review.decided)
//	council fixtures   list the event fixtures
//	council setup      create or update council's NATS topology once (for COUNCIL_NATS_SETUP=bind)
//	council eval       HumanEval problems × protocols against an LLM server: quality, tokens, calls, makespan
//
// Every command takes -h. Exit status: 0 success, 1 failure, 2 bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

const usage = `council — a council of LLM agents as serverless functions

Usage:
  council dev [flags]                      run the local stack, send a deliberation fixture, print the ranked result
  council send [flags] FIXTURE|FILE|-      send one CloudEvent over HTTP (-to) or to the JetStream broker (-nats)
  council watch -nats URL [flags]          follow events, progress and (-tokens) token streams
  council status -execute URL ID           one deliberation (GET /deliberations/{id})
  council view -execute URL [-open] ID     the address of its page: ranking, scores, timeline, live (GET /deliberations/{id}/view)
  council find -execute URL TASK_ID       the deliberations of a task, newest first (GET /deliberations?task_id=)
  council rerank -execute URL ID [-aggregation mean|borda|confidence]
                                           rank a completed deliberation again from its critiques, no LLM call
  council jobs -execute URL                the running deliberations (GET /jobs)
  council stats -execute URL               execute's health and statistics (GET /status)
  council dlq list|show|replay -nats URL   the dead letters (terminated events, with the reason); replay one
  council cancel -nats URL ID              end a running deliberation as cancelled
  council review -nats URL ID approve|reject|feedback
                                           decide at a review gate (-reason WHY, -text FEEDBACK)
  council fixtures                         list the event fixtures
  council setup [-nats URL]                create or update the NATS streams and buckets once (COUNCIL_NATS_*)
  council eval [flags]                     HumanEval problems × protocols against an OpenAI-compatible server, at equal
                                           token budget: quality (pass@1), tokens, calls, makespan per protocol

Run 'council <command> -h' for the flags of a command.
`

// streams are the process's standard streams and environment, handed to
// every command.
type streams struct {
	in       io.Reader
	out, err io.Writer
	getenv   func(string) string
}

// errUsage marks a command-line mistake: run answers it with exit status 2.
var errUsage = errors.New("usage")

// usagef returns an error wrapping errUsage.
func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	s := streams{in: stdin, out: stdout, err: stderr, getenv: getenv}
	var err error
	switch args[0] {
	case "dev":
		err = dev(ctx, args[1:], stdout, stderr, getenv)
	case "send":
		err = send(ctx, args[1:], s)
	case "watch":
		err = watch(ctx, args[1:], s)
	case "status":
		err = status(ctx, args[1:], s)
	case "view":
		err = view(ctx, args[1:], s)
	case "find":
		err = find(ctx, args[1:], s)
	case "rerank":
		err = rerankCmd(ctx, args[1:], s)
	case "jobs":
		err = jobs(ctx, args[1:], s)
	case "stats":
		err = stats(ctx, args[1:], s)
	case "dlq":
		err = dlq(ctx, args[1:], s)
	case "cancel":
		err = cancelCmd(ctx, args[1:], s)
	case "review":
		err = reviewCmd(ctx, args[1:], s)
	case "setup":
		err = setupCmd(ctx, args[1:], s)
	case "fixtures":
		err = listFixtures(stdout)
	case "eval":
		err = evalCmd(ctx, args[1:], s)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "council: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var flagErr flagError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &flagErr):
		// The flag package has printed the error and the command's usage.
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "council %s: %v\nRun 'council %s -h' for its flags.\n", args[0], err, args[0])
		return 2
	default:
		fmt.Fprintf(stderr, "council %s: %v\n", args[0], err)
		return 1
	}
}

// flagError is an error of the flag package, already printed with the
// command's usage.
type flagError struct{ err error }

func (e flagError) Error() string { return e.err.Error() }
func (e flagError) Unwrap() error { return e.err }

// newFlags returns a flag set for command that prints synopsis and the
// flags on -h.
func newFlags(command, synopsis string, s streams) *flag.FlagSet {
	fl := flag.NewFlagSet(command, flag.ContinueOnError)
	fl.SetOutput(s.err)
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "Usage: council %s\n\nFlags:\n", synopsis)
		fl.PrintDefaults()
	}
	return fl
}

// parseFlags parses args with fl, allowing flags after the positional
// arguments ("send fixture.json -to URL"), and returns the positional ones.
func parseFlags(fl *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fl.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, flagError{err}
		}
		rest := fl.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// After "--" everything is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
