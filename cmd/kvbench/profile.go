package main

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/cobra"
)

// addProfileFlag gives cmd and its subcommands --cpuprofile FILE: a pprof CPU profile of the
// whole run (go tool pprof FILE).
func addProfileFlag(cmd *cobra.Command) {
	var path string
	var f *os.File
	cmd.PersistentFlags().StringVar(&path, "cpuprofile", "", "write a CPU profile of the run to this file")
	cmd.PersistentPreRunE = func(*cobra.Command, []string) error {
		if path == "" {
			return nil
		}
		var err error
		if f, err = os.Create(path); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}
	cmd.PersistentPostRunE = func(*cobra.Command, []string) error {
		if f == nil {
			return nil
		}
		pprof.StopCPUProfile()
		return f.Close()
	}
}
