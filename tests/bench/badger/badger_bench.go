// badger_bench runs peer_bench's workloads (tests/bench/peer_bench.c) against
// Badger v2 (Debian's golang-github-dgraph-io-badger-dev), built offline in
// GOPATH mode, together with common.go:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o badger_bench common.go badger_bench.go
//
// Same flags, same key format and value sizes, same random-number generator and
// zipfian, one goroutine, one put per transaction; writes JSON in peer_bench's
// format so tests/bench/compare.py can put all four engines in one table.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

type result struct {
	Engine    string  `json:"engine"`
	Workload  string  `json:"workload"`
	ValueSize int     `json:"value_size"`
	Ops       int     `json:"ops"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
}

type space struct {
	Engine    string `json:"engine"`
	ValueSize int    `json:"value_size"`
	Disk      uint64 `json:"disk_bytes"`
	Written   uint64 `json:"written_bytes"`
	User      uint64 `json:"user_bytes"`
}

var (
	results   []result
	spaces    []space
	lat       []uint32
	wanted    map[string]bool
	startTime time.Time
)

func want(w string) bool { return len(wanted) == 0 || wanted[w] || w == "fillrandom" }

func record(s time.Time) {
	d := time.Since(s).Nanoseconds()
	if d > math.MaxUint32 {
		d = math.MaxUint32
	}
	lat = append(lat, uint32(d))
}

func finish(workload string, vs int, t0 time.Time) {
	if !want(workload) || len(lat) == 0 {
		lat = lat[:0]
		return
	}
	secs := time.Since(t0).Seconds()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := result{Engine: "badger", Workload: workload, ValueSize: vs, Ops: len(lat),
		OpsPerSec: float64(len(lat)) / secs, P50: float64(lat[len(lat)/2]) / 1000,
		P99: float64(lat[len(lat)*99/100]) / 1000}
	results = append(results, r)
	fmt.Printf("  %-8s %-12s %10.0f ops/s   p50 %7.2f us   p99 %8.2f us\n", "badger", workload,
		r.OpsPerSec, r.P50, r.P99)
	lat = lat[:0]
}

func processWchar() uint64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), "wchar: ") {
			v, _ := strconv.ParseUint(strings.TrimPrefix(s.Text(), "wchar: "), 10, 64)
			return v
		}
	}
	return 0
}

func dirBytes(dir string) uint64 {
	var total uint64
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			total += uint64(info.Size())
		}
	}
	return total
}

func runEngine(base string, num, reads uint64, vs int, cacheBytes int64) {
	key := make([]byte, keyLen)
	val := make([]byte, vs)
	fmt.Printf("badger, %d-byte values\n", vs)

	dir := filepath.Join(base, fmt.Sprintf("badger-%d-seq", vs))
	if want("fillseq") {
		db := open(dir, cacheBytes)
		t0 := time.Now()
		for i := uint64(0); i < num; i++ {
			keyOf(2*i, key)
			fillValue(val)
			s := time.Now()
			put(db, key, val)
			record(s)
		}
		finish("fillseq", vs, t0)
		db.Close()
		os.RemoveAll(dir)
	}

	dir = filepath.Join(base, fmt.Sprintf("badger-%d", vs))
	db := open(dir, cacheBytes)
	perm := make([]uint64, num)
	for i := range perm {
		perm[i] = uint64(i)
	}
	for i := num - 1; i > 0; i-- {
		j := nextRand() % (i + 1)
		perm[i], perm[j] = perm[j], perm[i]
	}
	w0 := processWchar()
	t0 := time.Now()
	for i := uint64(0); i < num; i++ {
		keyOf(2*perm[i], key)
		fillValue(val)
		s := time.Now()
		put(db, key, val)
		record(s)
	}
	finish("fillrandom", vs, t0)
	perm = nil
	t0 = time.Now()
	if want("overwrite") {
		for i := uint64(0); i < num; i++ {
			keyOf(2*(nextRand()%num), key)
			fillValue(val)
			s := time.Now()
			put(db, key, val)
			record(s)
		}
	}
	finish("overwrite", vs, t0)
	puts := uint64(1)
	if want("overwrite") {
		puts = 2
	}
	spaces = append(spaces, space{Engine: "badger", ValueSize: vs, Disk: dirBytes(dir),
		Written: processWchar() - w0, User: puts * num * uint64(keyLen+vs)})

	if want("readrandom") {
		t0 = time.Now()
		for i := uint64(0); i < reads; i++ {
			keyOf(2*(nextRand()%num), key)
			s := time.Now()
			if !get(db, key) {
				die("readrandom", fmt.Errorf("key %s missing", key))
			}
			record(s)
		}
		finish("readrandom", vs, t0)
	}
	if want("readmissing") {
		t0 = time.Now()
		for i := uint64(0); i < reads; i++ {
			keyOf(2*(nextRand()%num)+1, key)
			s := time.Now()
			if get(db, key) {
				die("readmissing", fmt.Errorf("key %s present", key))
			}
			record(s)
		}
		finish("readmissing", vs, t0)
	}
	if want("seekrandom") {
		t0 = time.Now()
		for i := uint64(0); i < reads/10; i++ {
			keyOf(2*(nextRand()%num), key)
			s := time.Now()
			if scan(db, key, scanLen) == 0 {
				die("seekrandom", fmt.Errorf("nothing at %s", key))
			}
			record(s)
		}
		finish("seekrandom", vs, t0)
	}
	var z *zipf
	mixes := []struct {
		name    string
		readPct int
	}{{"ycsb-a", 50}, {"ycsb-b", 95}, {"ycsb-c", 100}}
	for _, m := range mixes {
		if !want(m.name) {
			continue
		}
		if z == nil {
			z = newZipf(num)
		}
		t0 = time.Now()
		for i := uint64(0); i < reads; i++ {
			keyOf(2*z.next(), key)
			isRead := int(nextRand()%100) < m.readPct
			if !isRead {
				fillValue(val)
			}
			s := time.Now()
			if isRead {
				get(db, key)
			} else {
				put(db, key, val)
			}
			record(s)
		}
		finish(m.name, vs, t0)
	}
	db.Close()
	os.RemoveAll(dir)
}

func main() {
	num := flag.Uint64("num", 1000000, "keys")
	reads := flag.Uint64("reads", 200000, "reads per read workload")
	sizes := flag.String("value_sizes", "100,1024", "value sizes")
	cacheMB := flag.Int64("cache_mb", 8, "block cache MiB")
	workloads := flag.String("workloads", "", "comma-separated workloads (default all)")
	repeat := flag.Int("repeat", 1, "repetitions")
	base := flag.String("dir", "", "scratch directory")
	jsonOut := flag.String("json", "", "write results as JSON here")
	dataMB := flag.Uint64("data_mb", 0, "size each data set in MiB instead of --num keys")
	flag.Parse()
	wanted = map[string]bool{}
	for _, w := range strings.Split(*workloads, ",") {
		if w != "" {
			wanted[w] = true
		}
	}
	if *base == "" {
		*base = fmt.Sprintf("/tmp/badger-bench-%d", os.Getpid())
	}
	os.MkdirAll(*base, 0755)
	fmt.Printf("badger_bench: %d keys of %d bytes, %d reads, 1 goroutine, %d repetition(s)\n",
		*num, keyLen, *reads, *repeat)
	for _, s := range strings.Split(*sizes, ",") {
		vs, err := strconv.Atoi(s)
		if err != nil {
			die("--value_sizes", err)
		}
		n := *num
		if *dataMB > 0 {
			n = (*dataMB << 20) / uint64(keyLen+vs)
		}
		for r := 0; r < *repeat; r++ {
			runEngine(*base, n, *reads, vs, *cacheMB<<20)
		}
	}
	os.RemoveAll(*base)
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			die("--json", err)
		}
		fmt.Fprintf(f, "{\"engine\": \"badger\", \"results\": [")
		for i, r := range results {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(f, "%s\n  {\"engine\": %q, \"workload\": %q, \"value_size\": %d, \"ops\": %d, "+
				"\"ops_per_sec\": %.0f, \"p50_us\": %.2f, \"p99_us\": %.2f}", sep, r.Engine, r.Workload,
				r.ValueSize, r.Ops, r.OpsPerSec, r.P50, r.P99)
		}
		fmt.Fprintf(f, "],\n \"space\": [")
		for i, s := range spaces {
			sep := ","
			if i == 0 {
				sep = ""
			}
			fmt.Fprintf(f, "%s\n  {\"engine\": %q, \"value_size\": %d, \"disk_bytes\": %d, "+
				"\"written_bytes\": %d, \"user_bytes\": %d}", sep, s.Engine, s.ValueSize, s.Disk,
				s.Written, s.User)
		}
		fmt.Fprintf(f, "]}\n")
		f.Close()
	}
}
