// Command council is the developer CLI of council. `council dev` runs the
// local stack (embedded NATS JetStream, the three functions, a real LLM
// server), sends a deliberation fixture and prints the ranked result.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
}

const usage = `council — a council of LLM agents as serverless functions

Usage:
  council dev [flags]      run the local stack, send a deliberation fixture, print the ranked result
  council fixtures         list the event fixtures

Run 'council <command> -h' for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = dev(ctx, args[1:], stdout, stderr, getenv)
	case "fixtures":
		err = listFixtures(stdout)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "council: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == flag.ErrHelp {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "council %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
