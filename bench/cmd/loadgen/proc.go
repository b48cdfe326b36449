package main

import (
	"bytes"
	"os"
	"strconv"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100 on every Linux
// architecture we run on.
const clockTicks = 100

// usage is the CPU time and resident memory of a process tree at one moment.
type usage struct {
	cpuTicks  uint64
	rssKB     uint64
	processes int
}

// statFields returns the fields of /proc/PID/stat after the command name (which may contain
// spaces and parentheses, so it is skipped up to its last ')').
func statFields(pid int) []string {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	end := bytes.LastIndexByte(raw, ')')
	if end < 0 || end+2 > len(raw) {
		return nil
	}
	return splitSpaces(raw[end+2:])
}

func splitSpaces(b []byte) []string {
	var out []string
	for _, f := range bytes.Fields(b) {
		out = append(out, string(f))
	}
	return out
}

// Field positions after the command name: state is 0, so ppid is 1, utime 11, stime 12.
const (
	fieldPPID  = 1
	fieldUTime = 11
	fieldSTime = 12
)

func cpuTicks(pid int) (uint64, bool) {
	f := statFields(pid)
	if len(f) <= fieldSTime {
		return 0, false
	}
	u, _ := strconv.ParseUint(f[fieldUTime], 10, 64)
	s, _ := strconv.ParseUint(f[fieldSTime], 10, 64)
	return u + s, true
}

func rssKB(pid int) uint64 {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("VmRSS:")) {
			fields := bytes.Fields(line[len("VmRSS:"):])
			if len(fields) > 0 {
				kb, _ := strconv.ParseUint(string(fields[0]), 10, 64)
				return kb
			}
		}
	}
	return 0
}

// descendants returns the roots and every process below them (uvicorn's workers are
// children of its supervisor), found through the parent ids in /proc.
func descendants(roots []int) []int {
	if len(roots) == 0 {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	children := make(map[int][]int)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > fieldPPID {
			parent, _ := strconv.Atoi(f[fieldPPID])
			children[parent] = append(children[parent], pid)
		}
	}
	seen := make(map[int]bool)
	var out []int
	for queue := append([]int(nil), roots...); len(queue) > 0; queue = queue[1:] {
		pid := queue[0]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

func measure(roots []int) usage {
	var u usage
	for _, pid := range descendants(roots) {
		if ticks, ok := cpuTicks(pid); ok {
			u.cpuTicks += ticks
			u.rssKB += rssKB(pid)
			u.processes++
		}
	}
	return u
}

// coreTimes returns (busy, total) jiffies per core from /proc/stat, to show how busy the
// whole machine was: other people's load on the benchmark's cores shows up here.
func coreTimes() [][2]uint64 {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil
	}
	var out [][2]uint64
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("cpu")) || bytes.HasPrefix(line, []byte("cpu ")) {
			continue
		}
		var busy, total uint64
		for i, f := range bytes.Fields(line)[1:] {
			if i >= 8 { // guest time is already counted in user time
				break
			}
			v, _ := strconv.ParseUint(string(f), 10, 64)
			total += v
			if i != 3 && i != 4 { // idle, iowait
				busy += v
			}
		}
		out = append(out, [2]uint64{busy, total})
	}
	return out
}

func busyPercent(before, after [][2]uint64) []float64 {
	var out []float64
	for i := range after {
		if i >= len(before) || after[i][1] <= before[i][1] {
			continue
		}
		busy := float64(after[i][0] - before[i][0])
		total := float64(after[i][1] - before[i][1])
		out = append(out, round(100*busy/total, 1))
	}
	return out
}
