package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// wire tells the events of one API apart: which carry a token, which end the stream, which
// report a failure after the stream began.
type wire struct {
	body    string
	isToken func(data []byte) bool
	isEnd   func(data []byte) bool
	isError func(data []byte) bool
}

var wires = map[string]wire{
	// streamchat's native /api/chat: start, delta…, then end or error (is_end true).
	"native": {
		body:    `{"uid":1,"message":"Write a short answer about streaming."}`,
		isToken: func(d []byte) bool { return bytes.Contains(d, []byte(`"type":"delta"`)) },
		isEnd:   func(d []byte) bool { return bytes.Contains(d, []byte(`"is_end":true`)) },
		isError: func(d []byte) bool { return bytes.Contains(d, []byte(`"type":"error"`)) },
	},
	// OpenAI's chat.completion.chunk stream, ended by [DONE].
	"openai": {
		body: `{"model":"bench-model","stream":true,` +
			`"messages":[{"role":"user","content":"Write a short answer about streaming."}]}`,
		isToken: hasContent,
		isEnd:   func(d []byte) bool { return bytes.Equal(d, []byte("[DONE]")) },
		isError: func(d []byte) bool { return bytes.HasPrefix(d, []byte(`{"error"`)) },
	},
	// The same stream for a request that offers a tool: the tokens are pieces of a call's
	// arguments (delta.tool_calls[].function.arguments).
	"openai-tools": {
		body: `{"model":"bench-model","stream":true,` +
			`"messages":[{"role":"user","content":"What is the weather in Paris?"}],` +
			`"tools":[{"type":"function","function":{"name":"get_weather","parameters":` +
			`{"type":"object","properties":{"city":{"type":"string"}}}}}]}`,
		isToken: func(d []byte) bool { return hasString(d, argumentsKey) },
		isEnd:   func(d []byte) bool { return bytes.Equal(d, []byte("[DONE]")) },
		isError: func(d []byte) bool { return bytes.HasPrefix(d, []byte(`{"error"`)) },
	},
	// The Responses API (POST /v1/responses, stream: true; stored, as by default): a token is
	// an output_text.delta event; the stream ends with the event that carries the whole
	// response (completed, incomplete or failed). Every event's "type" comes first.
	"responses": {
		body: `{"model":"bench-model","stream":true,` +
			`"input":"Write a short answer about streaming."}`,
		isToken: prefixed(`{"type":"response.output_text.delta"`),
		isEnd: func(d []byte) bool {
			return bytes.HasPrefix(d, []byte(`{"type":"response.completed"`)) ||
				bytes.HasPrefix(d, []byte(`{"type":"response.incomplete"`)) ||
				bytes.HasPrefix(d, []byte(`{"type":"response.failed"`))
		},
		isError: func(d []byte) bool {
			return bytes.HasPrefix(d, []byte(`{"type":"response.failed"`)) ||
				bytes.HasPrefix(d, []byte(`{"type":"error"`))
		},
	},
	// The AI SDK's UI message stream (POST /api/ui/chat, what useChat sends): a token is a
	// text-delta chunk, the end is [DONE]. Each stream is the first message of a new chat
	// (chatIDMarker becomes a fresh id), as each native stream is a new conversation.
	"ui": {
		body: `{"id":"` + chatIDMarker + `","messages":[{"id":"m1","role":"user","parts":` +
			`[{"type":"text","text":"Write a short answer about streaming."}]}],` +
			`"trigger":"submit-message"}`,
		isToken: prefixed(`{"type":"text-delta"`),
		isEnd:   func(d []byte) bool { return bytes.Equal(d, []byte("[DONE]")) },
		isError: prefixed(`{"type":"error"`),
	},
}

// chatIDMarker in a request body is replaced by a new id for every stream.
const chatIDMarker = "{chat_id}"

func prefixed(prefix string) func([]byte) bool {
	p := []byte(prefix)
	return func(d []byte) bool { return bytes.HasPrefix(d, p) }
}

var contentKey = []byte(`"content":`)
var argumentsKey = []byte(`"arguments":`)

// hasContent: some "content" key has a non-empty string value (the role chunk's is "").
func hasContent(d []byte) bool { return hasString(d, contentKey) }

// hasString: some `key` has a non-empty string value.
func hasString(d, key []byte) bool {
	for {
		i := bytes.Index(d, key)
		if i < 0 {
			return false
		}
		d = bytes.TrimLeft(d[i+len(key):], " ")
		if len(d) >= 2 && d[0] == '"' && d[1] != '"' {
			return true
		}
	}
}

// worker runs streams one after another on its kept-alive connection until ctx ends.
type worker struct {
	client  *http.Client
	url     string
	body    []byte
	headers http.Header
	wire    wire
	expect  int
	shared  *counters
	errs    *errorLog
	reader  *bufio.Reader
	ttft    samples
	gaps    samples
	// -follow: the other node's base URL; each stream is also followed there, from its
	// first event on, by a goroutine of its own.
	follow    string
	followers sync.WaitGroup
	ctx       context.Context // the run's, for the followers
	name      string          // unique in the run and across runs: the start of fresh chat ids
	streams   int             // streams begun, for fresh chat ids
}

// nextBody is the body of the next request: w.body, with a fresh chat id in place of
// chatIDMarker when it has one (worker name and stream count: unique within the run, and
// across runs by the run's start time).
func (w *worker) nextBody() []byte {
	i := bytes.Index(w.body, []byte(chatIDMarker))
	if i < 0 {
		return w.body
	}
	w.streams++
	id := fmt.Sprintf("%s-%d", w.name, w.streams)
	out := make([]byte, 0, len(w.body)+len(id))
	out = append(out, w.body[:i]...)
	out = append(out, id...)
	return append(out, w.body[i+len(chatIDMarker):]...)
}

// stream performs one request and reads its events as they arrive.
func (w *worker) stream(ctx context.Context) {
	w.ctx = ctx
	w.shared.started.Add(1)
	began := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(w.nextBody()))
	req.Header = w.headers.Clone()
	resp, err := w.client.Do(req)
	if err != nil {
		w.fail(ctx, began, "connect", 0, "connect: "+err.Error())
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		text, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		code := strconv.Itoa(resp.StatusCode)
		w.fail(ctx, began, code, 0, "HTTP "+code+": "+string(text))
		return
	}
	tokens, kind, detail := w.read(resp.Body, began)
	switch {
	case kind == "":
		w.shared.completed.Add(1)
		if w.expect > 0 && tokens != w.expect {
			w.errs.note("short", tokens, fmt.Sprintf("%d tokens, expected %d", tokens, w.expect))
		}
		io.Copy(io.Discard, resp.Body) // to the end, so the connection is reused
	default:
		w.fail(ctx, began, kind, tokens, detail)
	}
}

// read consumes SSE events until the end marker; kind is "" on a proper end. An event is
// classified at its data line (all our servers send one) and counted at its blank line.
func (w *worker) read(body io.Reader, began time.Time) (tokens int, kind, detail string) {
	r := w.reader
	r.Reset(body)
	var last time.Time
	var pending, token, end bool
	var failure string
	for {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return tokens, "read", "an SSE line longer than the read buffer"
		}
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return tokens, "eof", fmt.Sprintf("the stream ended without its end marker after %d tokens", tokens)
			}
			return tokens, "read", "read: " + err.Error()
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte("data:")) && !pending {
				data := bytes.TrimPrefix(line[5:], []byte(" "))
				pending, token, end = true, w.wire.isToken(data), w.wire.isEnd(data)
				if w.follow != "" && tokens == 0 && !token {
					if id := streamID(data); id != "" {
						w.startFollower(id, uidOf(data))
					}
				}
				if w.wire.isError(data) {
					failure = "error event: " + string(data)
				}
			}
			continue // comments (pings), id:, event: lines
		}
		if !pending {
			continue
		}
		pending = false
		if failure != "" {
			return tokens, "stream_error", failure
		}
		if token {
			now := time.Now()
			w.shared.tokens.Add(1)
			if tokens == 0 {
				w.ttft.add(now.Sub(began).Microseconds())
			} else {
				w.gaps.add(now.Sub(last).Microseconds())
			}
			last = now
			tokens++
		}
		if end {
			return tokens, "", ""
		}
	}
}

// fail counts a failed stream, unless it failed because the run's deadline cut it. A stream
// cut while still waiting for its first token adds its wait so far to the TTFT figures (a
// lower bound of its TTFT): leaving it out would hide the streams a server starves.
func (w *worker) fail(ctx context.Context, began time.Time, kind string, tokens int, detail string) {
	if ctx.Err() != nil {
		w.shared.cut.Add(1)
		if tokens == 0 {
			w.shared.cutWaiting.Add(1)
			w.ttft.add(time.Since(began).Microseconds())
		}
		return
	}
	w.errs.note(kind, tokens, detail)
}

var streamIDKey = []byte(`"stream_id":"`)
var uidKey = []byte(`"uid":`)

// uidOf is the uid of a native start event (its owner, which a service key must name to
// follow it), or "".
func uidOf(d []byte) string {
	i := bytes.Index(d, uidKey)
	if i < 0 {
		return ""
	}
	rest := d[i+len(uidKey):]
	j := 0
	for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
		j++
	}
	return string(rest[:j])
}

// streamID is the stream_id of a native start event, or "".
func streamID(d []byte) string {
	i := bytes.Index(d, streamIDKey)
	if i < 0 {
		return ""
	}
	rest := d[i+len(streamIDKey):]
	if j := bytes.IndexByte(rest, '"'); j > 0 {
		return string(rest[:j])
	}
	return ""
}

// startFollower follows stream id on the other node until its end (or the run's), the way a
// second tab or a resumed client would: from the first event, live. Its tokens are counted
// apart; a follower that fails is an error of kind follow_<kind>.
func (w *worker) startFollower(id, uid string) {
	w.shared.followed.Add(1)
	w.followers.Add(1)
	go func() {
		defer w.followers.Done()
		ctx := w.ctx
		target := w.follow + "/api/chat/streams/" + id + "?after=0"
		if uid != "" {
			target += "&uid=" + uid
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		req.Header = w.headers.Clone()
		req.Header.Del("Content-Type")
		resp, err := w.client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				w.errs.note("follow_connect", 0, "follow: "+err.Error())
			}
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			text, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
			w.errs.note("follow_"+strconv.Itoa(resp.StatusCode), 0, "follow: "+string(text))
			return
		}
		f := follower{wire: w.wire, reader: bufio.NewReaderSize(resp.Body, 16<<10), tokens: &w.shared.followTokens}
		tokens, kind, detail := f.read()
		switch {
		case kind == "":
			w.shared.followCompleted.Add(1)
			if w.expect > 0 && tokens != w.expect {
				w.errs.note("follow_short", tokens, fmt.Sprintf("followed %d tokens, expected %d", tokens, w.expect))
			}
		case ctx.Err() == nil:
			w.errs.note("follow_"+kind, tokens, "follow: "+detail)
		}
	}()
}

// follower reads one followed stream: like worker.read, counting tokens only.
type follower struct {
	wire   wire
	reader *bufio.Reader
	tokens *atomic.Int64
}

func (f *follower) read() (tokens int, kind, detail string) {
	var pending, token, end bool
	for {
		line, err := f.reader.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return tokens, "read", "an SSE line longer than the read buffer"
		}
		if err != nil {
			return tokens, "eof", fmt.Sprintf("ended without its end marker after %d tokens", tokens)
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			if bytes.HasPrefix(line, []byte("data:")) && !pending {
				data := bytes.TrimPrefix(line[5:], []byte(" "))
				pending, token, end = true, f.wire.isToken(data), f.wire.isEnd(data)
				if f.wire.isError(data) {
					return tokens, "stream_error", "error event: " + string(data)
				}
			}
			continue
		}
		if !pending {
			continue
		}
		pending = false
		if token {
			f.tokens.Add(1)
			tokens++
		}
		if end {
			return tokens, "", ""
		}
	}
}
