// Command upstream is the benchmark's fake OpenAI-compatible model server.
//
// It answers POST /v1/chat/completions with a stream shaped like OpenAI's: a role chunk,
// one chunk per token on a fixed schedule (token i at first-delay + i*delay after the
// headers, so a slow write never makes later tokens late), a finish chunk, a usage chunk when
// stream_options.include_usage is set, then "data: [DONE]". Each chunk is its own flushed
// write, as a real model server sends them. A non-streaming request gets one
// chat.completion object. GET /v1/models, /health and /stats (counters as JSON) complete it.
//
// It prints "listening http://ADDR" as its first line, so a harness can ask for port 0.
// Standard library only: it builds with Debian's golang-go and no module download.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// Plain ASCII pieces: they go into JSON strings without escaping.
var words = []string{
	"Streaming", " keeps", " the", " reader", " busy", ",", " one", " token", " at", " a",
	" time", ";", " the", " gateway", " must", " not", " slow", " it", " down", ".",
}

type config struct {
	tokens     int
	delay      time.Duration
	firstDelay time.Duration
	model      string
}

type counters struct {
	requests, active, completed, aborted, chunks atomic.Int64
}

type request struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	MaxTokens     int    `json:"max_tokens"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Messages []struct {
		Content any `json:"content"`
	} `json:"messages"`
	Tools []json.RawMessage `json:"tools"`
}

type server struct {
	cfg   config
	stats counters
	seq   atomic.Int64
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0 picks a free one)")
	tokens := flag.Int("tokens", 200, "tokens per answer")
	delay := flag.Duration("delay", 0, "time between tokens (0: as fast as the connection takes them)")
	first := flag.Duration("first-delay", -1, "time before the first token (default: -delay)")
	model := flag.String("model", "", "model name in the chunks (default: the request's)")
	flag.Parse()
	if *first < 0 {
		*first = *delay
	}
	s := &server{cfg: config{tokens: *tokens, delay: *delay, firstDelay: *first, model: *model}}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening http://%s\n", ln.Addr())
	os.Stdout.Sync()

	mux := http.NewServeMux()
	mux.HandleFunc("/v1/chat/completions", s.chat)
	mux.HandleFunc("/v1/models", s.models)
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/stats", s.statsJSON)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Minute, ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(srv.Serve(ln))
}

func (s *server) models(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"object":"list","data":[{"id":"bench-model","object":"model","created":0,"owned_by":"bench"}]}`)
}

func (s *server) statsJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int64{
		"requests": s.stats.requests.Load(), "active": s.stats.active.Load(),
		"completed": s.stats.completed.Load(), "aborted": s.stats.aborted.Load(),
		"chunks": s.stats.chunks.Load(),
	})
}

func (s *server) chat(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var req request
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"the body is not a JSON chat request","type":"invalid_request_error"}}`)
		return
	}
	s.stats.requests.Add(1)
	s.stats.active.Add(1)
	defer s.stats.active.Add(-1)

	a := s.answer(&req)
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		if !pause(r, s.cfg.firstDelay+time.Duration(a.tokens)*s.cfg.delay) {
			s.stats.aborted.Add(1)
			return
		}
		w.Write(a.whole())
		s.stats.completed.Add(1)
		return
	}
	if s.stream(w, r, a, req.StreamOptions.IncludeUsage) {
		s.stats.completed.Add(1)
	} else {
		s.stats.aborted.Add(1)
	}
}

// stream writes the answer as SSE; false if the client went away first.
func (s *server) stream(w http.ResponseWriter, r *http.Request, a *answer, usage bool) bool {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	flusher := w.(http.Flusher)
	send := func(b []byte) bool {
		if _, err := w.Write(b); err != nil {
			return false
		}
		flusher.Flush()
		s.stats.chunks.Add(1)
		return r.Context().Err() == nil
	}
	if !send(a.chunk(`{"role":"assistant","content":""}`, "null")) {
		return false
	}
	// With tools, the answer is one call whose arguments come a token a chunk, as a model
	// server streams them; the tokens are the same words.
	piece, finish := `{"content":"`, `"stop"`
	if a.tools {
		first := `{"tool_calls":[{"index":0,"id":"call_` + a.id + `","type":"function",` +
			`"function":{"name":"get_weather","arguments":""}}]}`
		if !send(a.chunk(first, "null")) {
			return false
		}
		piece, finish = `{"tool_calls":[{"index":0,"function":{"arguments":"`, `"tool_calls"`
	}
	closing := `"}`
	if a.tools {
		closing = `"}}]}`
	}
	began := time.Now()
	for i := 0; i < a.tokens; i++ {
		due := began.Add(s.cfg.firstDelay + time.Duration(i)*s.cfg.delay)
		if !pause(r, time.Until(due)) {
			return false
		}
		if !send(a.chunk(piece+words[i%len(words)]+closing, "null")) {
			return false
		}
	}
	if !send(a.chunk(`{}`, finish)) {
		return false
	}
	if usage && !send(a.usage()) {
		return false
	}
	return send([]byte("data: [DONE]\n\n"))
}

// pause waits d (if positive), returning false early if the client disconnects.
func pause(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// answer holds what every chunk of one response shares, and a buffer to build them in.
type answer struct {
	head   string // `{"id":…,"model":…,"choices":[`
	id     string
	model  string
	tokens int
	prompt int
	tools  bool // the request offered tools: answer with a call
	buf    []byte
}

func (s *server) answer(req *request) *answer {
	model := s.cfg.model
	if model == "" {
		model = req.Model
	}
	if model == "" || !plain(model) {
		model = "bench-model"
	}
	n := s.cfg.tokens
	if req.MaxTokens > 0 && req.MaxTokens < n {
		n = req.MaxTokens
	}
	prompt := 0
	for _, m := range req.Messages {
		if text, ok := m.Content.(string); ok {
			prompt += len(text)/4 + 1
		}
	}
	id := "chatcmpl-bench-" + strconv.FormatInt(s.seq.Add(1), 10)
	head := `{"id":"` + id + `","object":"chat.completion.chunk","created":` +
		strconv.FormatInt(time.Now().Unix(), 10) + `,"model":"` + model + `","choices":[`
	return &answer{
		head: head, id: id, model: model, tokens: n, prompt: prompt, tools: len(req.Tools) > 0,
		buf: make([]byte, 0, 256),
	}
}

func (a *answer) chunk(delta, finish string) []byte {
	b := append(a.buf[:0], "data: "...)
	b = append(b, a.head...)
	b = append(b, `{"index":0,"delta":`...)
	b = append(b, delta...)
	b = append(b, `,"logprobs":null,"finish_reason":`...)
	b = append(b, finish...)
	b = append(b, "}]}\n\n"...)
	a.buf = b
	return b
}

func (a *answer) usage() []byte {
	b := append(a.buf[:0], "data: "...)
	b = append(b, a.head...)
	b = fmt.Appendf(b, `],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`+"\n\n",
		a.prompt, a.tokens, a.prompt+a.tokens)
	a.buf = b
	return b
}

func (a *answer) whole() []byte {
	text := make([]byte, 0, a.tokens*8)
	for i := 0; i < a.tokens; i++ {
		text = append(text, words[i%len(words)]...)
	}
	return fmt.Appendf(nil, `{"id":"%s","object":"chat.completion","created":%d,"model":"%s",`+
		`"choices":[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"stop"}],`+
		`"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		a.id, time.Now().Unix(), a.model, text, a.prompt, a.tokens, a.prompt+a.tokens)
}

// plain: only characters that need no JSON escaping, so the hand-built chunks stay valid.
func plain(s string) bool {
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == '/' || c == ':'
		if !ok {
			return false
		}
	}
	return true
}
