package main

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// samples collects latencies in microseconds. Each worker appends to its own, so recording
// costs no lock; they are merged once at the end, and the percentiles are exact.
type samples []uint32

func (s *samples) add(us int64) {
	if us < 0 {
		us = 0
	}
	if us > math.MaxUint32 {
		us = math.MaxUint32
	}
	*s = append(*s, uint32(us))
}

// Distribution is what the JSON reports for a set of latencies, in milliseconds.
type Distribution struct {
	Count int     `json:"count"`
	P10   float64 `json:"p10_ms"` // the least disturbed by other load on a shared machine
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func distribution(parts []samples) Distribution {
	var all []uint32
	for _, p := range parts {
		all = append(all, p...)
	}
	d := Distribution{Count: len(all)}
	if len(all) == 0 {
		return d
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(all)))) - 1
		if i < 0 {
			i = 0
		}
		return round(float64(all[i])/1000, 3)
	}
	var sum float64
	for _, v := range all {
		sum += float64(v)
	}
	d.P10, d.P50, d.P90, d.P99, d.P999 = at(0.10), at(0.50), at(0.90), at(0.99), at(0.999)
	d.Max = round(float64(all[len(all)-1])/1000, 3)
	d.Mean = round(sum/float64(len(all))/1000, 3)
	return d
}

// Errors counts failed streams by kind. Streams still open at the deadline are not errors.
type Errors struct {
	Total            int64            `json:"total"`
	Connect          int64            `json:"connect"`
	Status           map[string]int64 `json:"status"`
	Read             int64            `json:"read"`
	EOFBeforeEnd     int64            `json:"eof_before_end"`
	StreamError      int64            `json:"stream_error_event"`
	ShortStream      int64            `json:"short_stream"`
	BeforeFirstToken int64            `json:"failed_before_first_token"`
	First            []string         `json:"first"`
}

// errorLog is the shared, locked side of error counting: errors are rare, so a mutex is fine.
type errorLog struct {
	mu sync.Mutex
	e  Errors
}

func (l *errorLog) note(kind string, tokens int, message string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := &l.e
	switch kind {
	case "connect":
		e.Connect++
	case "read":
		e.Read++
	case "eof":
		e.EOFBeforeEnd++
	case "stream_error":
		e.StreamError++
	case "short":
		e.ShortStream++
	default: // an HTTP status
		if e.Status == nil {
			e.Status = make(map[string]int64)
		}
		e.Status[kind]++
	}
	e.Total++
	if tokens == 0 && kind != "short" {
		e.BeforeFirstToken++
	}
	if len(e.First) < 5 {
		e.First = append(e.First, message)
	}
}

func (l *errorLog) snapshot() Errors {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.e
	if out.Status == nil {
		out.Status = map[string]int64{}
	}
	if out.First == nil {
		out.First = []string{}
	}
	return out
}

// counters shared by all workers.
type counters struct {
	started, completed, cut, cutWaiting, tokens atomic.Int64
	// With -follow: streams followed on the other node, and the tokens they carried.
	followed, followCompleted, followTokens atomic.Int64
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
