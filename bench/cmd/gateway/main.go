// Command gateway is the benchmark's compiled reference point: a streaming passthrough written
// with Go's net/http alone. POST /v1/chat/completions is forwarded to the upstream and its SSE
// answer written back line by line as it is read, flushed at the end of every event unless
// more upstream bytes are already waiting (so no event is ever held back, and a burst is
// written in few syscalls). It checks nothing, saves nothing and meters nothing: it is what a
// gateway costs when it does only the forwarding.
//
// It prints "listening http://ADDR" on standard output once it accepts connections.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	upstream := flag.String("upstream", "", "the upstream's chat-completions URL (loopback)")
	flag.Parse()
	if *upstream == "" {
		log.Fatal("gateway: -upstream is required")
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 20000,
		DisableCompression:  true,
		ReadBufferSize:      16 << 10,
		IdleConnTimeout:     90 * time.Second,
	}}
	mux := http.NewServeMux()
	mux.Handle("/v1/chat/completions", &passthrough{client: client, upstream: *upstream})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening http://%s\n", ln.Addr())
	os.Stdout.Sync()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(srv.Serve(ln))
}

type passthrough struct {
	client   *http.Client
	upstream string
}

func (p *passthrough) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, p.upstream, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, `{"error":{"message":"upstream unreachable"}}`, http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(resp.StatusCode)
	flusher := w.(http.Flusher)
	flusher.Flush()
	in := bufio.NewReaderSize(resp.Body, 16<<10)
	for {
		line, err := in.ReadSlice('\n')
		if len(line) > 0 {
			if _, werr := w.Write(line); werr != nil {
				return
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			flusher.Flush()
			return
		}
		blank := len(line) == 1 || (len(line) == 2 && line[0] == '\r')
		if blank && in.Buffered() == 0 {
			flusher.Flush()
		}
	}
}
