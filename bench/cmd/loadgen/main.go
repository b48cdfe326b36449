// Command loadgen holds C streaming chat requests open against one endpoint and reports what
// a client sees, as one JSON object on standard output.
//
// Each of C workers loops: POST, read the SSE stream event by event as bytes arrive, POST
// again on the same kept-alive connection, until the run's duration ends (streams still open
// then are cut, and not counted as errors). Workers start spread over -ramp; the steady
// window runs from the end of the ramp to the end of the run, and throughput and CPU figures
// are taken over it.
//
// Reported: time to first token, the gap between consecutive tokens of a stream, tokens per
// second, errors by kind, and from /proc the CPU time and resident memory of the server under
// test (-pid, with its child processes), of the fake upstream (-up-pid) and of loadgen itself.
// Standard library only.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

type options struct {
	url      string
	c        int
	duration time.Duration
	ramp     time.Duration
	wire     string
	body     string
	headers  string
	expect   int
	pids     []int
	upPid    int
	label    string
	follow   string
}

func parseFlags() options {
	var o options
	var pids string
	flag.StringVar(&o.url, "url", "http://127.0.0.1:8000/api/chat", "endpoint (loopback only)")
	flag.IntVar(&o.c, "c", 64, "concurrent streams")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of the whole run, ramp included")
	flag.DurationVar(&o.ramp, "ramp", 0, "spread the workers' first requests over this time")
	flag.StringVar(&o.wire, "wire", "native", "event format: native (streamchat's /api/chat), openai, openai-tools (a tool call's arguments), "+
		"responses (/v1/responses) or ui (/api/ui/chat, a new chat per stream)")
	flag.StringVar(&o.body, "body", "", "request body (default: a one-message request for -wire); "+
		chatIDMarker+" in it becomes a new id for every stream")
	flag.StringVar(&o.headers, "H", "", "extra headers, 'Name: value' separated by '|'")
	flag.IntVar(&o.expect, "expect-tokens", 0, "tokens each complete stream must carry (0: no check)")
	flag.StringVar(&pids, "pid", "", "comma-separated PIDs of the server under test")
	flag.IntVar(&o.upPid, "up-pid", 0, "PID of the fake upstream")
	flag.StringVar(&o.label, "label", "", "label copied into the result")
	flag.StringVar(&o.follow, "follow", "", "native wire: also follow every stream from this base URL "+
		"(another node), GET /api/chat/streams/{id} from its first event")
	flag.Parse()
	for _, p := range strings.Split(pids, ",") {
		if v, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && v > 0 {
			o.pids = append(o.pids, v)
		}
	}
	if _, ok := wires[o.wire]; !ok {
		fail("unknown -wire %q (native, openai, openai-tools, responses or ui)", o.wire)
	}
	if o.c < 1 || o.duration <= 0 || o.ramp < 0 || o.ramp >= o.duration {
		fail("need -c >= 1 and 0 <= -ramp < -duration")
	}
	if err := loopbackOnly(o.url); err != nil {
		fail("%v", err)
	}
	if o.follow != "" {
		if o.wire != "native" {
			fail("-follow needs -wire native")
		}
		if err := loopbackOnly(o.follow); err != nil {
			fail("%v", err)
		}
	}
	return o
}

// loopbackOnly keeps a load generator from being pointed at someone else's machine.
func loopbackOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("refusing a non-loopback target: %s", host)
	}
	return nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}

// snapshot is everything measured at one moment: window start (end of ramp) or end.
type snapshot struct {
	at                     time.Time
	tokens, followTokens   int64
	server, upstream, self usage
	cores                  [][2]uint64
}

func (o *options) take(c *counters) snapshot {
	return snapshot{
		at: time.Now(), tokens: c.tokens.Load(), followTokens: c.followTokens.Load(),
		server:   measure(o.pids),
		upstream: measure(pidList(o.upPid)), self: measure([]int{os.Getpid()}), cores: coreTimes(),
	}
}

func pidList(pid int) []int {
	if pid > 0 {
		return []int{pid}
	}
	return nil
}

func main() {
	o := parseFlags()
	w := wires[o.wire]
	body := o.body
	if body == "" {
		body = w.body
	}
	headers := http.Header{"Content-Type": {"application/json"}, "Accept": {"text/event-stream"}}
	for _, h := range strings.Split(o.headers, "|") {
		if name, value, ok := strings.Cut(h, ":"); ok {
			headers.Set(strings.TrimSpace(name), strings.TrimSpace(value))
		}
	}
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		MaxIdleConnsPerHost: o.c, // per host: followers keep their own C to the other node
		DisableCompression:  true,
		ReadBufferSize:      32 << 10,
	}
	client := &http.Client{Transport: transport}

	var shared counters
	var errs errorLog
	workers := make([]*worker, o.c)
	for i := range workers {
		workers[i] = &worker{
			client: client, url: o.url, body: []byte(body), headers: headers, wire: w,
			expect: o.expect, shared: &shared, errs: &errs, reader: bufio.NewReaderSize(nil, 64<<10),
			follow: o.follow, name: fmt.Sprintf("bench-%d-w%d", time.Now().UnixNano(), i),
		}
	}

	idle := measure(o.pids)
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(o.duration))
	defer cancel()
	peak := newPeakTracker(o.pids)
	go peak.run(ctx)

	var wg sync.WaitGroup
	for i, wk := range workers {
		wg.Add(1)
		go func(i int, wk *worker) {
			defer wg.Done()
			delay := time.Duration(int64(o.ramp) * int64(i) / int64(o.c))
			if !sleepCtx(ctx, time.Until(start.Add(delay))) {
				return
			}
			for ctx.Err() == nil {
				wk.stream(ctx)
			}
		}(i, wk)
	}

	sleepCtx(context.Background(), time.Until(start.Add(o.ramp)))
	from := o.take(&shared)
	sleepCtx(context.Background(), time.Until(start.Add(o.duration)))
	to := o.take(&shared)
	peak.see(to.server.rssKB)
	cancel()
	wg.Wait()
	for _, wk := range workers {
		wk.followers.Wait()
	}

	var ttft, gaps []samples
	for _, wk := range workers {
		ttft, gaps = append(ttft, wk.ttft), append(gaps, wk.gaps)
	}
	res := report(&o, &shared, &errs, idle, peak.max(), from, to, distribution(ttft), distribution(gaps))
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
	fmt.Fprintf(os.Stderr, "loadgen %s c=%d: %.0f tokens/s, %d errors, ttft p50 %.2f ms, gap p99 %.2f ms, server cpu %.1f%%\n",
		o.label, o.c, res.TokensPerS, res.Errors.Total, res.TTFT.P50, res.Gap.P99, res.Server.CPUPercent)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// peakTracker samples the server's resident memory every 200 ms and keeps the highest.
type peakTracker struct {
	pids []int
	mu   sync.Mutex
	kb   uint64
}

func newPeakTracker(pids []int) *peakTracker { return &peakTracker{pids: pids} }

func (p *peakTracker) run(ctx context.Context) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		p.see(measure(p.pids).rssKB)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *peakTracker) see(kb uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kb > p.kb {
		p.kb = kb
	}
}

func (p *peakTracker) max() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kb
}
