// Command cluster is a small service that embeds a bondkv node and serves its keys over HTTP.
// Three of them started as separate processes form one cluster:
//
//	go run ./examples/cluster -id 1 -listen 127.0.0.1:7001 -http 127.0.0.1:8001 -dir /tmp/bk1
//	go run ./examples/cluster -id 2 -listen 127.0.0.1:7002 -http 127.0.0.1:8002 -dir /tmp/bk2 -join 127.0.0.1:7001
//	go run ./examples/cluster -id 3 -listen 127.0.0.1:7003 -http 127.0.0.1:8003 -dir /tmp/bk3 -join 127.0.0.1:7001
//
//	curl -X PUT --data world 127.0.0.1:8001/kv/hello
//	curl 127.0.0.1:8003/kv/hello
//
// The first node starts a cluster of one; the others join through it, and the placement driver
// moves replicas to them until every range has three. Any node serves any key: one that holds
// no replica of the key's range forwards the request.
//
// Endpoints: GET/PUT/DELETE /kv/<key>, POST /split/<key>, GET /ranges (JSON), GET /healthz.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/bondkv/bondkv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	id := fs.Uint64("id", 1, "node ID, unique in the cluster")
	listen := fs.String("listen", "127.0.0.1:7001", "address other nodes reach this node at")
	httpAddr := fs.String("http", "127.0.0.1:8001", "address of this service's HTTP API")
	dir := fs.String("dir", "", "data directory (required)")
	join := fs.String("join", "", "comma-separated addresses of running nodes to join (empty: start a new cluster)")
	region := fs.String("region", "", "locality label region=<value> of this node")
	deadAfter := fs.Duration("dead-after", 0, "declare a silent node dead after this long (default 30s)")
	verbose := fs.Bool("v", false, "log at Info level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("-dir is required")
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	opts := &bondkv.Options{NodeID: *id, ListenAddr: *listen, Logger: logger}
	if *join != "" {
		opts.Join = strings.Split(*join, ",")
	}
	if *region != "" {
		opts.Locality = map[string]string{"region": *region}
	}
	opts.Ranges.DeadNodeTimeout = *deadAfter
	db, err := bondkv.Open(*dir, opts)
	if err != nil {
		return err
	}
	defer db.Close()

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler(db), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http", "err", err)
		}
	}()
	// The line the README and the tests wait for.
	fmt.Printf("node %d ready: cluster %s, http %s\n", db.NodeID(), db.Addr(), ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

func handler(db *bondkv.DB) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/kv/", func(w http.ResponseWriter, r *http.Request) {
		key := []byte(strings.TrimPrefix(r.URL.Path, "/kv/"))
		var err error
		switch r.Method {
		case http.MethodGet:
			var v []byte
			if v, err = db.Get(r.Context(), key); err == nil {
				_, _ = w.Write(v)
				return
			}
		case http.MethodPut, http.MethodPost:
			var v []byte
			if v, err = io.ReadAll(io.LimitReader(r.Body, bondkv.MaxValueSize+1)); err == nil {
				err = db.Put(r.Context(), key, v)
			}
		case http.MethodDelete:
			err = db.Delete(r.Context(), key)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		writeErr(w, err)
	})
	mux.HandleFunc("/split/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, db.Split(r.Context(), []byte(strings.TrimPrefix(r.URL.Path, "/split/"))))
	})
	mux.HandleFunc("/ranges", func(w http.ResponseWriter, r *http.Request) {
		ds, err := db.Inspect().Ranges(r.Context())
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ds)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	return mux
}

func writeErr(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, bondkv.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, bondkv.ErrEmptyKey), errors.Is(err, bondkv.ErrKeyTooLarge), errors.Is(err, bondkv.ErrValueTooLarge):
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}
