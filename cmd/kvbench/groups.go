package main

import (
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/bondkv/bondkv/bench"
)

func newGroupsCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &groupsFlags{cfg: bench.DefaultGroupsConfig(), stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "groups",
		Short: "Memory, start-up time and idle CPU of many Raft groups on one node",
		Long: `groups measures what Raft groups cost on one node: it opens one storage engine and one
Raft host with bondkv's default configuration (50 ms tick, 1 s election timeout) in this
process, starts --count single-replica groups (ranges 3, 4, ...; group i owns the keys
[g%06d(i), g%06d(i+1))), waits until every group has a leader, and reports:

  create       from the first group started until every group has a leader (one
               randomized election timeout, 1-2 s, is the floor)
  RSS          the process's resident memory after a GC that returns freed pages to the OS,
               before the Raft host started (engine open) and once every group has a leader;
               per group = (after - before) / count, the host's fixed cost included
  heap         the same for the live Go heap (counts preallocated buffers not yet touched)
  goroutines   once every group has a leader
  idle cores   process CPU time (user+system) over --idle with nothing to do, in cores

With --write it then proposes one put to every group and counts those applied.

JSON (--json, last line of stdout):
  bench ("groups"), groups, cpus, rtt_ms, election_rtt, host_s, start_s, create_s,
  rss_before_mib, rss_after_mib, rss_per_group_mib, heap_before_mib, heap_after_mib,
  heap_per_group_mib, goroutines, idle_s, idle_cores, write, writes_ok, write_errors,
  write_s, goroutines_after_write, first_error

RSS is read from /proc/self/status (Linux).

Exit status: 0 on success, 1 if the benchmark failed or a --write put failed, 2 for a bad
command line.`,
		Example: `  kvbench groups --count 1000
  kvbench groups --count 1000 --idle 10s --write --json`,
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          f.run,
	}
	cmd.SetFlagErrorFunc(flagError)
	fs := cmd.Flags()
	fs.IntVar(&f.cfg.Count, "count", f.cfg.Count, "number of single-replica Raft groups to start")
	fs.DurationVar(&f.cfg.Idle, "idle", f.cfg.Idle, "how long idle CPU is measured once every group has a leader (0 = skip)")
	fs.BoolVar(&f.cfg.Write, "write", false, "after the idle window, propose one put to every group")
	fs.StringVar(&f.cfg.Dir, "dir", "", "keep the data under `DIR`/groups, which must not hold data yet\n(default: a temporary directory, removed afterwards)")
	fs.BoolVar(&f.json, "json", false, "also print the result as one JSON object, the last line of stdout")
	fs.BoolVarP(&f.verbose, "verbose", "v", false, "log the engine's and dragonboat's messages to stderr")
	return cmd
}

// groupsFlags are the flags of a groups benchmark, and where it writes.
type groupsFlags struct {
	cfg            bench.GroupsConfig
	json           bool
	verbose        bool
	stdout, stderr io.Writer
}

func (f *groupsFlags) run(cmd *cobra.Command, _ []string) error {
	cfg := f.cfg
	if err := cfg.Validate(); err != nil {
		return usageError{cmd: cmd.CommandPath(), err: err}
	}
	cfg.Logger = runLogger(f.verbose, f.stderr)
	if showProgress(f.json, f.verbose, f.stderr) {
		cfg.Progress = (&groupsProgressBar{w: f.stderr}).update
	}
	r, err := bench.RunGroups(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if err := bench.WriteGroupsTable(f.stdout, r); err != nil {
		return err
	}
	if f.json {
		if err := bench.WriteJSON(f.stdout, r); err != nil {
			return err
		}
	}
	if r.Write && r.WritesOK < r.Groups {
		return fmt.Errorf("groups: %d of %d puts failed (first error: %s)", r.Groups-r.WritesOK, r.Groups, r.FirstError)
	}
	return nil
}

// groupsProgressBar shows a running groups benchmark on a terminal: one bar per phase, cleared
// at the end (the results go to stdout).
type groupsProgressBar struct {
	w     io.Writer
	phase string
	bar   *progressbar.ProgressBar
}

// update is a bench.GroupsConfig.Progress: it is called from one goroutine.
func (p *groupsProgressBar) update(pr bench.GroupsProgress) {
	if pr.Finished || pr.Phase != p.phase {
		if p.bar != nil {
			p.bar.Finish()
			p.bar = nil
		}
		if pr.Finished {
			return
		}
	}
	if p.bar == nil {
		p.phase = pr.Phase
		p.bar = progressbar.NewOptions64(pr.Total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetRenderBlankState(true))
	}
	var desc string
	switch pr.Phase {
	case bench.GroupsPhaseStart:
		desc = fmt.Sprintf("starting groups   %d/%d", pr.Done, pr.Total)
	case bench.GroupsPhaseElect:
		desc = fmt.Sprintf("awaiting leaders  %d/%d", pr.Done, pr.Total)
	case bench.GroupsPhaseIdle:
		desc = fmt.Sprintf("idle CPU          %.1fs/%.0fs", float64(pr.Done)/1e3, float64(pr.Total)/1e3)
	case bench.GroupsPhaseWrite:
		desc = fmt.Sprintf("one put per group %d/%d", pr.Done, pr.Total)
	}
	p.bar.Describe(desc)
	p.bar.Set64(pr.Done)
}
