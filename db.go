package bondkv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/lni/dragonboat/v4/config"

	"github.com/bondkv/bondkv/internal/base"
	"github.com/bondkv/bondkv/internal/rpc"
	"github.com/bondkv/bondkv/raftgroup"
	"github.com/bondkv/bondkv/shard"
	"github.com/bondkv/bondkv/store"
)

// userRange is the first user range: it starts at the empty key, so merges never remove it.
const userRange = base.FirstUserRangeID

// DB is one node of a bondkv cluster. It is safe for concurrent use.
type DB struct {
	opts    Options // filled copy
	engine  *store.Engine
	host    *raftgroup.Host
	node    *shard.Node
	server  *rpc.Server
	client  *rpc.Client
	mux     *rpc.Mux
	serveWG sync.WaitGroup
	metrics *metricsCollector // nil without Options.Metrics
	txn     txnCounters

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// nodeIdentity is what a directory remembers about its node; dragonboat refuses to restart with
// a different node ID or address.
type nodeIdentity struct {
	NodeID     uint64 `json:"node_id"`
	ListenAddr string `json:"listen_addr"`
	// Bootstrapped is kept for directories written before ranges could split; unused now.
	Bootstrapped bool `json:"bootstrapped,omitempty"`
	// Join are the seed addresses the node joined through, used again if it restarts before
	// it holds any replica.
	Join []string `json:"join,omitempty"`
}

const identityKey = "node"

// Open opens (creating if needed) the node whose data lives in dir and starts it. With nil
// options it is a single-node cluster that keeps working across restarts.
func Open(dir string, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
		o.Peers = make(map[uint64]string, len(opts.Peers))
		for k, v := range opts.Peers {
			o.Peers[k] = v
		}
		o.Join = append([]string(nil), opts.Join...)
		o.Locality = make(map[string]string, len(opts.Locality))
		for k, v := range opts.Locality {
			o.Locality[k] = v
		}
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, fmt.Errorf("%w: dir is required", ErrInvalidOptions)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bondkv: open %s: %w", dir, err)
	}
	if o.Expert.MemTableSize == 0 {
		o.Expert.MemTableSize = defaultMemTableSize
	}
	engine, err := store.Open(filepath.Join(dir, "data"), &store.Options{
		FS:           o.Testing.FS,
		Logger:       o.Logger.With("component", "pebble"),
		CacheSize:    o.Expert.CacheSize,
		MemTableSize: o.Expert.MemTableSize,
	})
	if err != nil {
		return nil, fmt.Errorf("bondkv: open %s: %w", dir, err)
	}
	o.Txn = o.Txn.withDefaults()
	if o.Ranges.MaxStaleness == 0 {
		o.Ranges.MaxStaleness = defaultMaxStaleness
	}
	db := &DB{engine: engine}
	db.txn.stop, db.txn.cancel = context.WithCancel(context.Background())
	if err := db.start(dir, o); err != nil {
		return nil, errors.Join(err, db.shutdown())
	}
	return db, nil
}

func (db *DB) start(dir string, o Options) error {
	engine := db.engine
	id, fresh, err := resolveIdentity(engine, o)
	if err != nil {
		return err
	}
	if fresh {
		id.Join = o.Join
		// Stored before dragonboat sees the address (it freezes it), so that a crash at any later
		// point restarts with the same one, even when it was picked from port 0.
		if err := storeIdentity(engine, id); err != nil {
			return err
		}
	}
	o.NodeID, o.ListenAddr = id.NodeID, id.ListenAddr
	db.opts = o
	node := base.NodeID(id.NodeID)

	// One address for everything: the mux hands Raft connections to the Raft transport and
	// the rest to the node service.
	ln, err := net.Listen("tcp", id.ListenAddr)
	if err != nil {
		return fmt.Errorf("bondkv: listen on %s: %w", id.ListenAddr, err)
	}
	db.mux = rpc.NewMux(ln, o.Logger)
	var dial func(ctx context.Context, addr string) (net.Conn, error)
	serviceLn := db.mux.Service()
	if nw := o.Testing.Network; nw != nil {
		nw.Register(node, id.ListenAddr)
		dial = nw.Dialer(node)
		serviceLn = nw.Listener(node, serviceLn)
	}
	db.client = rpc.NewClient(dial, o.Logger)
	db.server = rpc.NewServer(o.Logger)

	transport := raftTransport(o, node, db.mux)
	db.host, err = raftgroup.NewHost(raftgroup.Config{
		NodeID:             node,
		Dir:                dir,
		RaftAddress:        id.ListenAddr,
		Engine:             engine,
		Logger:             o.Logger,
		TransportFactory:   transport,
		RTT:                o.Expert.RaftTick,
		ElectionTimeout:    o.Expert.ElectionTimeout,
		SnapshotEntries:    o.Expert.SnapshotEntries,
		CompactionOverhead: o.Expert.CompactionOverhead,
	})
	if err != nil {
		return fmt.Errorf("bondkv: %w", err)
	}
	cfg := shard.Config{
		NodeID: node, Addr: id.ListenAddr, Locality: o.Locality,
		Engine: engine, Host: db.host, Server: db.server, Client: db.client, Logger: o.Logger,
		Join:                  id.Join,
		Replicas:              o.Ranges.Replicas,
		DeadNodeTimeout:       o.Ranges.DeadNodeTimeout,
		SplitSize:             o.Ranges.SplitSize,
		SplitEntriesPerSecond: o.Ranges.SplitEntriesPerSecond,
		MergeSize:             o.Ranges.MergeSize,
		LivenessInterval:      o.Expert.LivenessInterval,
		PlacementInterval:     o.Expert.PlacementInterval,
		MaxConcurrentMoves:    o.Expert.MaxConcurrentMoves,
		MovesPerMinute:        o.Expert.MovesPerMinute,
	}
	if len(id.Join) == 0 {
		cfg.Bootstrap = map[base.NodeID]string{node: id.ListenAddr}
		if len(o.Peers) > 0 {
			cfg.Bootstrap = make(map[base.NodeID]string, len(o.Peers))
			for n, a := range o.Peers {
				cfg.Bootstrap[base.NodeID(n)] = a
			}
		}
	}
	db.node = shard.New(cfg) // registers the handlers
	// The service must answer before the node starts: joining and bootstrapping peers call it.
	db.serveWG.Add(1)
	go func() {
		defer db.serveWG.Done()
		if err := db.server.Serve(serviceLn); err != nil {
			o.Logger.Error("node service stopped", "err", err)
		}
	}()
	if err := db.node.Start(); err != nil {
		return fmt.Errorf("bondkv: %w", err)
	}
	db.txn.spawn(db.sweepLoop)
	if o.Metrics != nil {
		db.metrics = newMetricsCollector(db)
		if err := o.Metrics.Register(db.metrics); err != nil {
			db.metrics = nil
			return fmt.Errorf("%w: Metrics: %w", ErrInvalidOptions, err)
		}
	}
	o.Logger.Info("bondkv node started", "node", node, "addr", id.ListenAddr, "dir", dir, "new", fresh)
	return nil
}

// shutdown stops whatever start started, in reverse order, and closes the engine.
func (db *DB) shutdown() error {
	db.txn.shutdown() // background intent resolution; readers and other nodes finish what it leaves
	if db.metrics != nil {
		db.opts.Metrics.Unregister(db.metrics)
	}
	if db.node != nil {
		db.node.Close()
	}
	if db.server != nil {
		db.server.Stop()
		db.serveWG.Wait()
	}
	if db.host != nil {
		db.host.Close() // before the engine: replicas use it until the NodeHost stops
	}
	if db.client != nil {
		db.client.Close()
	}
	var errs []error
	if db.mux != nil {
		if err := db.mux.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if err := db.engine.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("bondkv: close: %w", err)
	}
	return nil
}

// raftTransport is the node's Raft transport: TCP on the mux's Raft side, through the simulated
// network if the options carry one.
func raftTransport(o Options, node base.NodeID, mux *rpc.Mux) config.TransportFactory {
	tcp := &rpc.RaftTransportFactory{Logger: o.Logger, Listen: func(string) (net.Listener, error) { return mux.Raft(), nil }}
	if o.Testing.Network == nil {
		return tcp
	}
	return o.Testing.Network.TransportFactory(node, tcp)
}

// resolveIdentity returns the node's identity: the stored one (checked against o) or, for a new
// directory, one made from o.
func resolveIdentity(engine *store.Engine, o Options) (nodeIdentity, bool, error) {
	raw, err := engine.GetNodeLocal(identityKey)
	switch {
	case err == nil:
		var id nodeIdentity
		if err := json.Unmarshal(raw, &id); err != nil || id.NodeID == 0 || id.ListenAddr == "" {
			return nodeIdentity{}, false, fmt.Errorf("bondkv: node identity %q: %w", raw, ErrCorruption)
		}
		var errs []error
		if o.NodeID != 0 && o.NodeID != id.NodeID {
			errs = append(errs, fmt.Errorf("NodeID %d: this directory belongs to node %d", o.NodeID, id.NodeID))
		}
		if o.ListenAddr != "" && o.ListenAddr != id.ListenAddr && !isPortZero(o.ListenAddr) {
			errs = append(errs, fmt.Errorf("ListenAddr %s: this node listens on %s (fixed at creation)", o.ListenAddr, id.ListenAddr))
		}
		if len(errs) > 0 {
			return nodeIdentity{}, false, fmt.Errorf("%w: %w", ErrInvalidOptions, errors.Join(errs...))
		}
		return id, false, nil
	case errors.Is(err, ErrNotFound):
	default:
		return nodeIdentity{}, false, fmt.Errorf("bondkv: read node identity: %w", err)
	}
	id := nodeIdentity{NodeID: o.NodeID, ListenAddr: o.ListenAddr}
	if id.NodeID == 0 {
		id.NodeID = 1
	}
	if id.ListenAddr == "" {
		id.ListenAddr = o.Peers[id.NodeID] // peers dial this node where Peers says it is
	}
	if id.ListenAddr == "" {
		id.ListenAddr = "127.0.0.1:0"
	}
	if isPortZero(id.ListenAddr) {
		addr, err := freePort(id.ListenAddr)
		if err != nil {
			return nodeIdentity{}, false, fmt.Errorf("bondkv: pick a port for %s: %w", id.ListenAddr, err)
		}
		id.ListenAddr = addr
	}
	return id, true, nil
}

func storeIdentity(engine *store.Engine, id nodeIdentity) error {
	raw, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := engine.PutNodeLocal(identityKey, raw); err != nil {
		return fmt.Errorf("bondkv: store node identity: %w", err)
	}
	return nil
}

func isPortZero(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// freePort binds addr (port 0) to learn a free port and releases it.
func freePort(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// NodeID is this node's ID.
func (db *DB) NodeID() uint64 { return db.opts.NodeID }

// Addr is the address this node's Raft transport listens on.
func (db *DB) Addr() string { return db.opts.ListenAddr }

// Close stops the node and closes its storage. It is idempotent; afterwards every call returns
// ErrClosed. Calls in flight return ErrClosed or, for writes already handed to consensus,
// ErrAmbiguous.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		db.closeErr = db.shutdown()
	})
	return db.closeErr
}

func (db *DB) checkOpen() error {
	if db.closed.Load() {
		return ErrClosed
	}
	return nil
}
