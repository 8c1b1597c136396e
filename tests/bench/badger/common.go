// Shared by badger_bench.go and badger_ycsb.go (each is built together with
// this file): the benchmarks' key format, random numbers and zipfian, and
// Badger opened and used the way the C benchmarks use the other engines.
package main

import (
	"fmt"
	"math"
	"os"

	badger "github.com/dgraph-io/badger"
	"github.com/dgraph-io/badger/options"
)

const keyLen = 16
const scanLen = 100

var rngState uint64 = 0x1234567

// splitmix64, as bench_util.h's bench_splitmix.
func splitmix(state *uint64) uint64 {
	*state += 0x9E3779B97F4A7C15
	z := *state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func nextRand() uint64 { return splitmix(&rngState) }

func keyOf(n uint64, key []byte) {
	for i := keyLen - 1; i >= 0; i-- {
		key[i] = byte('0' + n%10)
		n /= 10
	}
}

func fillValue(v []byte) {
	for i := 0; i < len(v); i += 8 {
		r := nextRand()
		for j := 0; j < 8 && i+j < len(v); j++ {
			v[i+j] = byte(r >> (8 * j))
		}
	}
}

type zipf struct{ n, theta, alpha, zetan, eta float64 }

func newZipf(n uint64) *zipf {
	z := &zipf{n: float64(n), theta: 0.99}
	zeta2 := 1.0 + math.Pow(0.5, z.theta)
	for i := uint64(1); i <= n; i++ {
		z.zetan += 1.0 / math.Pow(float64(i), z.theta)
	}
	z.alpha = 1.0 / (1.0 - z.theta)
	z.eta = (1.0 - math.Pow(2.0/z.n, 1.0-z.theta)) / (1.0 - zeta2/z.zetan)
	return z
}

func (z *zipf) next() uint64 { return z.nextFrom(&rngState) }

// A zipfian rank in [0, n) with rank 0 the most popular, unscrambled.
func (z *zipf) rank(rng *uint64) uint64 {
	u := float64(splitmix(rng)>>11) / 9007199254740992.0
	uz := u * z.zetan
	switch {
	case uz < 1.0:
		return 0
	case uz < 1.0+math.Pow(0.5, z.theta):
		return 1
	}
	r := uint64(z.n * math.Pow(z.eta*u-z.eta+1.0, z.alpha))
	if r >= uint64(z.n) {
		r = uint64(z.n) - 1
	}
	return r
}

// A zipfian rank scrambled (FNV-1a) over [0, n), as bench_util.h's zipf_next.
func (z *zipf) nextFrom(rng *uint64) uint64 {
	u := float64(splitmix(rng)>>11) / 9007199254740992.0
	uz := u * z.zetan
	var r uint64
	switch {
	case uz < 1.0:
		r = 0
	case uz < 1.0+math.Pow(0.5, z.theta):
		r = 1
	default:
		r = uint64(z.n * math.Pow(z.eta*u-z.eta+1.0, z.alpha))
	}
	h := uint64(0xcbf29ce484222325)
	for i := 0; i < 8; i++ {
		h = (h ^ ((r >> (8 * i)) & 0xff)) * 0x100000001b3
	}
	return h % uint64(z.n)
}

func die(what string, err error) {
	fmt.Fprintf(os.Stderr, "badger_bench: %s failed: %v\n", what, err)
	os.Exit(1)
}

func open(dir string, cacheBytes int64) *badger.DB {
	os.RemoveAll(dir)
	// The settings peer_bench gives every engine: 64 MiB write buffer (memtable),
	// block cache, ~10 bloom bits (1% false positives), 4 KiB blocks, no
	// compression, no sync; values of 1 KiB and more in the value log, as NoKV-C.
	opts := badger.DefaultOptions(dir).
		WithSyncWrites(false).
		WithMaxTableSize(64 << 20).
		WithBlockCacheSize(cacheBytes).
		WithBloomFalsePositive(0.01).
		WithCompression(options.None).
		WithValueThreshold(1 << 10).
		WithNumVersionsToKeep(1).
		WithLogger(nil)
	db, err := badger.Open(opts)
	if err != nil {
		die("open", err)
	}
	return db
}

func put(db *badger.DB, k, v []byte) {
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) }); err != nil {
		die("put", err)
	}
}

func get(db *badger.DB, k []byte) bool {
	found := false
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(k)
		if err == badger.ErrKeyNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		// A copy the caller owns, as the C APIs of the other engines return.
		_, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		die("get", err)
	}
	return found
}

func scan(db *badger.DB, k []byte, n int) int {
	got := 0
	err := db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.PrefetchSize = n
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Seek(k); it.Valid() && got < n; it.Next() {
			item := it.Item()
			_ = item.Key()
			// The value in place, as the C engines' iterators hand it out.
			if err := item.Value(func(v []byte) error { return nil }); err != nil {
				return err
			}
			got++
		}
		return nil
	})
	if err != nil {
		die("scan", err)
	}
	return got
}
