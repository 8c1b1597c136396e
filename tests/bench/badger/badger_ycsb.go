// badger_ycsb runs ycsb_bench's workloads (tests/bench/ycsb_bench.c: YCSB A to
// F, many client threads) against Badger v2, built offline in GOPATH mode
// together with common.go:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o badger_ycsb common.go badger_ycsb.go
//
// Same flags, key format, values, operation mix, zipfian and "latest" key
// choice as ycsb_bench, goroutines for threads (GOMAXPROCS as Go sets it), one
// write per transaction; prints ycsb_bench's table rows and writes JSON lines in
// its format (engine "badger") so one table can hold all four engines.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger"
)

const scanMax = 100

// Key number i (the i-th inserted) as 16 digits of a scrambled value, as
// ycsb_bench's key_of.
func ycsbKey(i uint64, key []byte) {
	n := i
	h := splitmix(&n) % 10000000000000000
	for k := keyLen - 1; k >= 0; k-- {
		key[k] = byte('0' + h%10)
		h /= 10
	}
}

func fillFrom(v []byte, rng *uint64) {
	for i := 0; i < len(v); i += 8 {
		x := splitmix(rng)
		for j := 0; j < 8 && i+j < len(v); j++ {
			v[i+j] = byte(x >> (8 * j))
		}
	}
}

type workload struct {
	name                            byte
	read, update, insert, scan, rmw int  // percentages
	latest                          bool // reads favour the newest keys
	uniform                         bool // keys chosen uniformly, not zipfian
}

var workloads = []workload{
	{'a', 50, 50, 0, 0, 0, false, false}, {'b', 95, 5, 0, 0, 0, false, false},
	{'c', 100, 0, 0, 0, 0, false, false}, {'f', 50, 0, 0, 0, 50, false, false},
	{'d', 95, 0, 5, 0, 0, true, false}, {'e', 0, 0, 5, 95, 0, false, false},
	{'r', 100, 0, 0, 0, 0, false, true}, {'w', 0, 0, 100, 0, 0, false, true},
}

type ycsbResult struct {
	Workload  string  `json:"workload"`
	Threads   int     `json:"threads"`
	Engine    string  `json:"engine"`
	OpsPerSec float64 `json:"ops_per_s"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
	P999      float64 `json:"p999_us"`
	Max       float64 `json:"max_us"`
	Over10ms  float64 `json:"over_10ms"`
	Over100ms float64 `json:"over_100ms"`
	Records   uint64  `json:"records"`
	ValueSize int     `json:"value_bytes"`
	Ops       uint64  `json:"ops"`
	Repeat    int     `json:"repeat"`
}

type run struct {
	z          *zipf
	valueBytes int
	inserted   uint64 // keys [0, inserted) exist (atomic)
	next       uint64 // the next key number to insert (atomic)
}

// A key that exists: zipfian over those inserted (latest: the newest hottest).
func (r *run) pick(w *workload, rng *uint64) uint64 {
	n := atomic.LoadUint64(&r.inserted)
	if w.latest {
		return n - 1 - r.z.rank(rng)%n
	}
	if w.uniform {
		return splitmix(rng) % n
	}
	return r.z.nextFrom(rng) % n
}

func main() {
	records := flag.Uint64("records", 1000000, "records loaded")
	ops := flag.Uint64("ops", 500000, "operations per workload")
	valueBytes := flag.Int("value_bytes", 1000, "value size")
	threadsFlag := flag.String("threads", "1,4,16", "client threads (goroutines)")
	workloadsFlag := flag.String("workloads", "a,b,c,f,d,e,r,w", "workloads, in this order")
	loadThreads := flag.Int("load_threads", 4, "goroutines loading")
	cacheMB := flag.Int64("cache_mb", 64, "block cache MiB")
	repeat := flag.Int("repeat", 1, "runs; each figure is the median")
	base := flag.String("dir", "", "work directory")
	jsonOut := flag.String("json", "", "JSON lines output")
	flag.String("engines", "", "ignored: ycsb_bench's flag, so both take the same flags")
	flag.Parse()
	var threads []int
	for _, s := range strings.Split(*threadsFlag, ",") {
		t, err := strconv.Atoi(s)
		if err != nil || t < 1 || t > 64 {
			fmt.Fprintln(os.Stderr, "badger_ycsb: threads must be 1..64")
			os.Exit(2)
		}
		threads = append(threads, t)
	}
	if *base == "" {
		*base = filepath.Join(os.TempDir(), fmt.Sprintf("badger-ycsb-%d", os.Getpid()))
	}
	fmt.Printf("badger_ycsb: %d records of %d bytes (16-byte keys), %d operations per workload, "+
		"%d load goroutines, %d repetition(s); %d MiB block cache\n",
		*records, *valueBytes, *ops, *loadThreads, *repeat, *cacheMB)
	if err := os.MkdirAll(*base, 0o755); err != nil {
		die("mkdir "+*base, err)
	}
	z := newZipf(*records)
	type cell struct {
		w byte
		t int
	}
	runs := map[cell][]ycsbResult{}
	for rep := 0; rep < *repeat; rep++ {
		dir := filepath.Join(*base, fmt.Sprintf("badger-%d", rep))
		db := open(dir, *cacheMB<<20)
		r := &run{z: z, valueBytes: *valueBytes}
		var wg sync.WaitGroup
		lat := make([][]float32, *loadThreads)
		t0 := time.Now()
		for g := 0; g < *loadThreads; g++ {
			wg.Add(1)
			go func(id int) {
				defer wg.Done()
				key := make([]byte, keyLen)
				val := make([]byte, *valueBytes)
				rng := uint64(0xfeed + id)
				for {
					i := atomic.AddUint64(&r.next, 1) - 1
					if i >= *records {
						return
					}
					ycsbKey(i, key)
					fillFrom(val, &rng)
					s := time.Now()
					put(db, key, val)
					lat[id] = append(lat[id], float32(time.Since(s).Nanoseconds())/1000)
				}
			}(g)
		}
		wg.Wait()
		load := summarize(lat, time.Since(t0).Seconds(), 'L', *loadThreads)
		load.Records, load.ValueSize, load.Ops, load.Repeat = *records, *valueBytes, *ops, *repeat
		runs[cell{'L', *loadThreads}] = append(runs[cell{'L', *loadThreads}], load)
		printResult(load)
		r.inserted, r.next = *records, *records
		// Two passes, as ycsb_bench: the mixes and readrandom at every thread
		// count, then fillrandom (w), which inserts the most, at every one.
		for pass := 0; pass < 2; pass++ {
			for _, t := range threads {
				for i := range workloads {
					w := &workloads[i]
					if !strings.ContainsRune(*workloadsFlag, rune(w.name)) || (w.name == 'w') != (pass == 1) {
						continue
					}
					res := runWorkload(db, r, w, t, *ops/uint64(t))
					res.Records, res.ValueSize, res.Ops, res.Repeat = *records, *valueBytes, *ops, *repeat
					runs[cell{w.name, t}] = append(runs[cell{w.name, t}], res)
					printResult(res)
				}
			}
		}
		db.Close()
		os.RemoveAll(dir)
	}
	os.Remove(*base)

	var jf *os.File
	if *jsonOut != "" {
		var err error
		if jf, err = os.Create(*jsonOut); err != nil {
			die("create "+*jsonOut, err)
		}
		defer jf.Close()
	}
	fmt.Printf("\n| workload | threads | engine | ops/s | p50 us | p99 us | p99.9 us | max us | >10 ms | >100 ms |\n")
	fmt.Printf("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	// The load first (its own thread count), then the workloads.
	cells := []cell{{'L', *loadThreads}}
	for i := range workloads {
		for _, t := range threads {
			cells = append(cells, cell{workloads[i].name, t})
		}
	}
	for _, c := range cells {
		rs := runs[c]
		if len(rs) == 0 {
			continue
		}
		med := func(f func(ycsbResult) float64) float64 {
			v := make([]float64, len(rs))
			for k, x := range rs {
				v[k] = f(x)
			}
			sort.Float64s(v)
			return v[len(v)/2]
		}
		m := rs[0]
		m.OpsPerSec = med(func(x ycsbResult) float64 { return x.OpsPerSec })
		m.P50 = med(func(x ycsbResult) float64 { return x.P50 })
		m.P99 = med(func(x ycsbResult) float64 { return x.P99 })
		m.P999 = med(func(x ycsbResult) float64 { return x.P999 })
		m.Max = med(func(x ycsbResult) float64 { return x.Max })
		m.Over10ms = med(func(x ycsbResult) float64 { return x.Over10ms })
		m.Over100ms = med(func(x ycsbResult) float64 { return x.Over100ms })
		fmt.Printf("| %s | %d | badger | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f |\n", m.Workload,
			c.t, m.OpsPerSec, m.P50, m.P99, m.P999, m.Max, m.Over10ms, m.Over100ms)
		if jf != nil {
			b, _ := json.Marshal(m)
			fmt.Fprintln(jf, string(b))
		}
	}
}

// Runs one workload with n goroutines of perThread operations each.
func runWorkload(db *badger.DB, r *run, w *workload, n int, perThread uint64) ycsbResult {
	lat := make([][]float32, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for g := 0; g < n; g++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			key := make([]byte, keyLen)
			val := make([]byte, r.valueBytes)
			rng := uint64(0xabcdef + id*7919)
			l := make([]float32, 0, perThread)
			for op := uint64(0); op < perThread; op++ {
				dice := int(splitmix(&rng) % 100)
				s := time.Now()
				switch {
				case dice < w.read:
					ycsbKey(r.pick(w, &rng), key)
					get(db, key)
				case dice < w.read+w.update:
					ycsbKey(r.pick(w, &rng), key)
					fillFrom(val, &rng)
					put(db, key, val)
				case dice < w.read+w.update+w.insert:
					i := atomic.AddUint64(&r.next, 1) - 1
					ycsbKey(i, key)
					fillFrom(val, &rng)
					put(db, key, val)
					for {
						seen := atomic.LoadUint64(&r.inserted)
						if seen > i || atomic.CompareAndSwapUint64(&r.inserted, seen, i+1) {
							break
						}
					}
				case dice < w.read+w.update+w.insert+w.scan:
					ycsbKey(r.pick(w, &rng), key)
					scan(db, key, 1+int(splitmix(&rng)%scanMax))
				default:
					ycsbKey(r.pick(w, &rng), key)
					get(db, key)
					fillFrom(val, &rng)
					put(db, key, val)
				}
				l = append(l, float32(time.Since(s).Nanoseconds())/1000)
			}
			lat[id] = l
		}(g)
	}
	wg.Wait()
	return summarize(lat, time.Since(t0).Seconds(), w.name, n)
}

func printResult(res ycsbResult) {
	fmt.Printf("  %-8s ycsb-%s %2d threads: %9.0f ops/s  p50 %7.1f  p99 %8.1f  p99.9 %9.1f  "+
		"max %10.1f us  >10ms %.0f  >100ms %.0f\n", "badger", res.Workload, res.Threads, res.OpsPerSec,
		res.P50, res.P99, res.P999, res.Max, res.Over10ms, res.Over100ms)
}

// One result from n goroutines' latencies (microseconds) over secs.
func summarize(lat [][]float32, secs float64, name byte, n int) ycsbResult {
	var all []float32
	over10, over100 := 0, 0
	for _, l := range lat {
		for _, x := range l {
			if x > 10000 {
				over10++
			}
			if x > 100000 {
				over100++
			}
		}
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res := ycsbResult{Workload: string(name), Threads: n, Engine: "badger",
		OpsPerSec: float64(len(all)) / secs, Over10ms: float64(over10), Over100ms: float64(over100)}
	if k := len(all); k > 0 {
		res.P50 = float64(all[k*50/100])
		res.P99 = float64(all[k*99/100])
		res.P999 = float64(all[k*999/1000])
		res.Max = float64(all[k-1])
	}
	return res
}
