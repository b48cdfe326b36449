package main

// Result is the JSON loadgen prints. Rates and CPU are over the steady window (after the ramp).
type Result struct {
	Label       string       `json:"label"`
	URL         string       `json:"url"`
	Concurrency int          `json:"concurrency"`
	DurationS   float64      `json:"duration_s"`
	WindowS     float64      `json:"window_s"`
	Streams     Streams      `json:"streams"`
	Errors      Errors       `json:"errors"`
	Tokens      int64        `json:"tokens"`
	TokensPerS  float64      `json:"tokens_per_s"`
	TTFT        Distribution `json:"ttft"`
	Gap         Distribution `json:"gap"`
	Server      Process      `json:"server"`
	Upstream    Process      `json:"upstream"`
	Loadgen     Process      `json:"loadgen"`
	CoresBusy   []float64    `json:"cores_busy_pct"`
	Follow      *Follow      `json:"follow,omitempty"`
}

// Follow is what the followers on the other node saw (-follow), over the same window.
type Follow struct {
	URL        string  `json:"url"`
	Followed   int64   `json:"followed"`
	Completed  int64   `json:"completed"`
	Tokens     int64   `json:"tokens"`
	TokensPerS float64 `json:"tokens_per_s"`
	// The followers' tokens over the requesters' in the window: 1.0 when every follower kept up.
	OfRequesters float64 `json:"of_requesters"`
}

// Streams counts requests by how they ended.
type Streams struct {
	Started   int64 `json:"started"`
	Completed int64 `json:"completed"`
	Cut       int64 `json:"cut_at_deadline"`
	// Cut by the deadline before their first token: their wait so far is in the TTFT figures.
	CutWaiting int64 `json:"cut_before_first_token"`
}

// Process is one process tree's share of the run.
type Process struct {
	PIDs          []int   `json:"pids,omitempty"`
	Processes     int     `json:"processes"`
	CPUPercent    float64 `json:"cpu_pct"`
	CPUUsPerToken float64 `json:"cpu_us_per_token"`
	RSSIdleKB     uint64  `json:"rss_idle_kb,omitempty"`
	RSSPeakKB     uint64  `json:"rss_peak_kb,omitempty"`
	RSSEndKB      uint64  `json:"rss_end_kb"`
}

func report(o *options, c *counters, errs *errorLog, idle usage, peakKB uint64,
	from, to snapshot, ttft, gap Distribution) Result {
	window := to.at.Sub(from.at).Seconds()
	tokens := to.tokens - from.tokens
	proc := func(a, b usage) Process {
		cpuS := float64(b.cpuTicks-a.cpuTicks) / clockTicks
		p := Process{Processes: b.processes, CPUPercent: round(100*cpuS/window, 1), RSSEndKB: b.rssKB}
		if tokens > 0 {
			p.CPUUsPerToken = round(cpuS*1e6/float64(tokens), 2)
		}
		return p
	}
	server := proc(from.server, to.server)
	server.PIDs, server.RSSIdleKB, server.RSSPeakKB = o.pids, idle.rssKB, peakKB
	var follow *Follow
	if o.follow != "" {
		followed := to.followTokens - from.followTokens
		follow = &Follow{
			URL: o.follow, Followed: c.followed.Load(), Completed: c.followCompleted.Load(),
			Tokens: c.followTokens.Load(), TokensPerS: round(float64(followed)/window, 0),
		}
		if tokens > 0 {
			follow.OfRequesters = round(float64(followed)/float64(tokens), 3)
		}
	}
	return Result{
		Follow: follow,
		Label:  o.label, URL: o.url, Concurrency: o.c,
		DurationS: o.duration.Seconds(), WindowS: round(window, 3),
		Streams: Streams{Started: c.started.Load(), Completed: c.completed.Load(), Cut: c.cut.Load(), CutWaiting: c.cutWaiting.Load()},
		Errors:  errs.snapshot(), Tokens: c.tokens.Load(),
		TokensPerS: round(float64(tokens)/window, 0),
		TTFT:       ttft, Gap: gap,
		Server: server, Upstream: proc(from.upstream, to.upstream), Loadgen: proc(from.self, to.self),
		CoresBusy: busyPercent(from.cores, to.cores),
	}
}
