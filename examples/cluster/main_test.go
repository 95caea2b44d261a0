package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is one cluster process under test.
type proc struct {
	cmd  *exec.Cmd
	http string
	done chan struct{}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start runs the service binary and waits for its "ready" line.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := sc.Text(); strings.Contains(line, "ready") {
				ready <- line
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("stderr of %v:\n%s", args, b)
		}
	})
	select {
	case line := <-ready:
		t.Log(line)
	case <-p.done:
		b, _ := os.ReadFile(logf.Name())
		t.Fatalf("process %v exited before it was ready:\n%s", args, b)
	case <-time.After(60 * time.Second):
		t.Fatalf("process %v not ready after 60s", args)
	}
	for i, a := range args {
		if a == "-http" {
			p.http = args[i+1]
		}
	}
	return p
}

// eventually retries f until it succeeds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

func put(addr, key, value string) error {
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr+"/kv/"+key, strings.NewReader(value))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("PUT %s: %s: %s", key, resp.Status, b)
	}
	return nil
}

func get(addr, key string) (string, error) {
	resp, err := http.Get("http://" + addr + "/kv/" + key)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", key, resp.Status, b)
	}
	return string(b), nil
}

type rangeJSON struct {
	RangeID  uint64 `json:"range_id"`
	Replicas []struct {
		Node      uint64 `json:"node"`
		NonVoting bool   `json:"non_voting"`
	} `json:"replicas"`
}

// TestThreeProcesses starts three service processes on loopback that form one cluster, writes
// on one and reads on another, kills one with SIGKILL and checks that the others keep serving.
func TestThreeProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	bin := filepath.Join(t.TempDir(), "cluster")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	base := t.TempDir()
	var addrs [3]string
	for i := range addrs {
		addrs[i] = freePort(t)
	}
	node := func(i int, extra ...string) *proc {
		args := []string{"-id", fmt.Sprint(i + 1), "-listen", addrs[i], "-http", freePort(t),
			"-dir", filepath.Join(base, fmt.Sprintf("n%d", i+1)), "-dead-after", "4s", "-v"}
		return start(t, bin, append(args, extra...)...)
	}
	p1 := node(0)
	p2 := node(1, "-join", addrs[0])
	p3 := node(2, "-join", addrs[0])

	eventually(t, 30*time.Second, "write on node 1", func() error { return put(p1.http, "hello", "world") })
	eventually(t, 30*time.Second, "read on node 3", func() error {
		v, err := get(p3.http, "hello")
		if err == nil && v != "world" {
			return fmt.Errorf("got %q", v)
		}
		return err
	})
	// Wait until every range has three voters, so that losing one node loses no quorum.
	eventually(t, 90*time.Second, "three replicas everywhere", func() error {
		resp, err := http.Get("http://" + p2.http + "/ranges")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var ds []rangeJSON
		if err := json.NewDecoder(resp.Body).Decode(&ds); err != nil {
			return err
		}
		for _, d := range ds {
			voters := 0
			for _, r := range d.Replicas {
				if !r.NonVoting {
					voters++
				}
			}
			if voters != 3 {
				return fmt.Errorf("range %d has %d voters", d.RangeID, voters)
			}
		}
		return nil
	})
	if err := p1.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p1.done
	for i := 0; i < 20; i++ {
		key := fmt.Sprintf("after-kill-%d", i)
		eventually(t, 30*time.Second, "write after the kill", func() error { return put(p2.http, key, "v") })
		eventually(t, 30*time.Second, "read after the kill", func() error {
			v, err := get(p3.http, key)
			if err == nil && v != "v" {
				return fmt.Errorf("got %q", v)
			}
			return err
		})
	}
	v, err := get(p3.http, "hello")
	if err != nil || v != "world" {
		t.Fatalf("hello after the kill: %q, %v", v, err)
	}
}
