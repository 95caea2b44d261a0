package rpc

import (
	"fmt"
	"testing"

	"github.com/lni/dragonboat/v4/config"

	"github.com/bondkv/bondkv/internal/rafttest"
)

func TestDragonboatOverTCP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NodeHosts")
	}
	nhs := rafttest.Start(t, 3, func(_ int, listen rafttest.ListenFunc) config.TransportFactory {
		return RaftTransportFactory{Listen: listen}
	}).NodeHosts
	for i := range 30 {
		rafttest.Propose(t, nhs[i%3], fmt.Sprint("k", i), fmt.Sprint("v", i))
	}
	for _, nh := range nhs {
		for i := range 30 {
			if got, want := rafttest.Read(t, nh, fmt.Sprint("k", i)), fmt.Sprint("v", i); got != want {
				t.Fatalf("%s: k%d = %q, want %q", nh.RaftAddress(), i, got, want)
			}
		}
	}
}
