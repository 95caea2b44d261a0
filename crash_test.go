package bondkv_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bondkv/bondkv"
)

const crashChildEnv = "BONDKV_CRASH_CHILD_DIR"

// TestCrashChild is not a test of its own: TestSIGKILLLosesNoAcknowledgedWrite runs the test
// binary again with this test selected and crashChildEnv set; the child then writes until it is
// killed, printing each acknowledged key on stdout.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("helper process for TestSIGKILLLosesNoAcknowledgedWrite")
	}
	db, err := bondkv.Open(dir, &bondkv.Options{Expert: fastExpert})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	prefix := os.Getenv(crashChildEnv + "_PREFIX")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				k := fmt.Sprintf("%s-g%d-%06d", prefix, g, i)
				if err := db.Put(context.Background(), []byte(k), []byte("v"+k)); err != nil {
					mu.Lock()
					fmt.Fprintf(out, "error %v\n", err)
					out.Flush()
					mu.Unlock()
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %s\n", k)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestSIGKILLLosesNoAcknowledgedWrite kills a child process running a single node with SIGKILL
// while eight writers are busy, at 20 different points, reopening the same directory each time:
// every write the child acknowledged before it died must be there afterwards.
func TestSIGKILLLosesNoAcknowledgedWrite(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("in the child")
	}
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	acked := map[string]bool{}
	const killPoints = 20
	for round := 0; round < killPoints; round++ {
		// Kill after a random number of acknowledgements (up to a few thousand writes in).
		after := 1 + rng.IntN(400)
		prefix := fmt.Sprintf("r%02d", round)
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, crashChildEnv+"_PREFIX="+prefix)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		n := 0
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		for sc.Scan() {
			line := sc.Text()
			if k, ok := strings.CutPrefix(line, "ack "); ok {
				acked[k] = true
				n++
				if n == after {
					cmd.Process.Signal(syscall.SIGKILL)
				}
			} else if strings.HasPrefix(line, "error ") {
				t.Fatalf("round %d: child: %s", round, line)
			}
		}
		deadline.Stop()
		cmd.Wait()
		if n < after {
			t.Fatalf("round %d: child died after %d acks, before the kill point %d: %s", round, n, after, stderr.String())
		}

		db, err := bondkv.Open(dir, &bondkv.Options{Expert: fastExpert})
		if err != nil {
			t.Fatalf("round %d (seed %d): reopen after SIGKILL: %v", round, seed, err)
		}
		kvs, err := db.Scan(context.Background(), nil, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := make(map[string]string, len(kvs))
		for _, kv := range kvs {
			got[string(kv.Key)] = string(kv.Value)
		}
		for k := range acked {
			if got[k] != "v"+k {
				t.Fatalf("round %d (seed %d): acknowledged write %s lost after SIGKILL (have %q)", round, seed, k, got[k])
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d acks; %d acknowledged writes all present", round, n, len(acked))
	}
}
