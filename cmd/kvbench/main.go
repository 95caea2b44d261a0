// Command kvbench benchmarks bondkv against the layers beneath it: raw Pebble (the storage
// engine, every write synced) and one raw dragonboat group (consensus alone). See kvbench --help.
//
// The command is thin: workloads, engines, measurement and reports live in package bench.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the benchmark could not run or measured failures
	exitUsage = 2 // bad command line
)

// run executes kvbench with args and returns the exit code. stdout gets only the table and the
// JSON line; everything else goes to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newRootCmd(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "kvbench: %v\n", err)
	if ue := (usageError{}); errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", ue.cmd)
		return exitUsage
	}
	return exitFail
}

// usageError is a bad command line: a flag that does not parse or a value out of range.
type usageError struct {
	cmd string // the command's path, for the hint
	err error
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }
