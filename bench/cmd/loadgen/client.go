package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
}

var contentKey = []byte(`"content":`)

// hasContent: some "content" key has a non-empty string value (the role chunk's is "").
func hasContent(d []byte) bool {
	for {
		i := bytes.Index(d, contentKey)
		if i < 0 {
			return false
		}
		d = bytes.TrimLeft(d[i+len(contentKey):], " ")
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
}

// stream performs one request and reads its events as they arrive.
func (w *worker) stream(ctx context.Context) {
	w.shared.started.Add(1)
	began := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(w.body))
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
