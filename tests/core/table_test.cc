// SSTable tests: blocks, bloom filter, table build/read round trips with and
// without zstd, the block cache, and detection of damaged files.
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "memtable/internal_key.h"
#include "sst/block.h"
#include "sst/block_builder.h"
#include "sst/bloom.h"
#include "sst/table.h"
#include "sst/table_builder.h"
#include "test_util.h"
#include "util/cache.h"
#include "util/checksum.h"

namespace {

using nokv_test::TempDir;

std::string IKey(const std::string& k, uint64_t ts, unsigned kind = NK_KIND_VALUE) {
  std::string s(k.size() + 8, '\0');
  nk_ikey_encode(&s[0], k.data(), k.size(), ts, kind);
  return s;
}

std::string UserKey(int i) {
  char buf[32];
  snprintf(buf, sizeof buf, "key%08d", i);
  return buf;
}

TEST(BlockTest, SeekAndScanWithPrefixCompression) {
  for (int interval : {1, 2, 16}) {
    nk_block_builder b;
    nk_block_builder_init(&b, interval);
    for (int i = 0; i < 500; i++) {
      std::string k = IKey(UserKey(i * 2), 7), v = "v" + std::to_string(i);
      ASSERT_TRUE(nk_block_builder_add(&b, k.data(), k.size(), v.data(), v.size()));
    }
    ASSERT_TRUE(nk_block_builder_finish(&b));
    char* copy = static_cast<char*>(malloc(b.buf.len));
    memcpy(copy, b.buf.data, b.buf.len);
    nk_block* blk;
    ASSERT_EQ(nk_block_new(copy, b.buf.len, true, &blk), NOKV_OK);
    nk_iter* it = nk_block_iter_new(blk, nullptr, nullptr, nullptr);
    int n = 0;
    for (nk_iter_seek_first(it); nk_iter_valid(it); nk_iter_next(it)) n++;
    EXPECT_EQ(n, 500) << interval;
    for (int i = 0; i < 1000; i++) {
      std::string t = IKey(UserKey(i), NK_MAX_TS, NK_KIND_SEEK);
      nk_iter_seek(it, t.data(), t.size());
      if (i == 999) {
        EXPECT_FALSE(nk_iter_valid(it));
        continue;
      }
      ASSERT_TRUE(nk_iter_valid(it)) << i;
      size_t kn;
      const char* k = nk_iter_key(it, &kn);
      EXPECT_EQ(std::string(k, kn - 8), UserKey((i + 1) / 2 * 2)) << i;
    }
    nk_iter_destroy(it);
    nk_block_free(blk);
    nk_block_builder_release(&b);
  }
}

// nk_block_find (the point lookup without an iterator) lands where the
// iterator's seek does, for every target, at every restart interval.
TEST(BlockTest, FindAgreesWithTheIterator) {
  // Short keys are rebuilt inside the iterator, long ones (past 48 bytes) in a
  // buffer of their own; a key growing past it mid-block moves there.
  for (const std::string& pad : {std::string(), std::string(40, 'p'), std::string(300, 'q')})
  for (int interval : {1, 2, 16}) {
    nk_block_builder b;
    nk_block_builder_init(&b, interval);
    for (int i = 0; i < 300; i++) {
      for (uint64_t ts : {30u, 20u, 10u}) {  // versions share the user key's bytes
        std::string k = IKey(pad + UserKey(i * 2) + (i % 5 == 0 ? pad : ""), ts);
        std::string v = "v" + std::to_string(i * 100 + ts);
        ASSERT_TRUE(nk_block_builder_add(&b, k.data(), k.size(), v.data(), v.size()));
      }
    }
    ASSERT_TRUE(nk_block_builder_finish(&b));
    nk_block blk;
    ASSERT_EQ(nk_block_init(&blk, b.buf.data, b.buf.len), NOKV_OK);
    nk_iter* it = nk_block_iter_new(&blk, nullptr, nullptr, nullptr);
    nk_buf scratch = {};
    for (int i = 0; i < 602; i++) {
      for (uint64_t ts : {NK_MAX_TS, uint64_t{25}, uint64_t{15}, uint64_t{5}}) {
        std::string t = IKey(pad + UserKey(i), ts, NK_KIND_SEEK);
        nk_iter_seek(it, t.data(), t.size());
        nk_block_entry e;
        int rc = nk_block_find(&blk, t.data(), t.size(), &scratch, &e);
        if (!nk_iter_valid(it)) {
          EXPECT_EQ(rc, NOKV_ENOTFOUND) << interval << " " << i << " " << ts;
          continue;
        }
        ASSERT_EQ(rc, NOKV_OK) << interval << " " << i << " " << ts;
        size_t kn, vn;
        const char* k = nk_iter_key(it, &kn);
        const char* v = nk_iter_value(it, &vn);
        EXPECT_EQ(std::string(e.key, e.klen), std::string(k, kn)) << interval << " " << i;
        EXPECT_EQ(std::string(k, kn - 8).substr(0, pad.size()), pad);
        EXPECT_EQ(std::string(e.val, e.vlen), std::string(v, vn)) << interval << " " << i;
      }
    }
    nk_buf_release(&scratch);
    nk_iter_destroy(it);
    nk_block_builder_release(&b);
  }
}

TEST(BlockTest, GarbageIsCorruptNotACrash) {
  std::mt19937 rng(nokv_test::TestSeed());
  int rejected = 0, corrupt_entries = 0;
  for (int round = 0; round < 2000; round++) {
    size_t len = rng() % 64 + 1;
    char* data = static_cast<char*>(malloc(len));
    for (size_t i = 0; i < len; i++) data[i] = static_cast<char>(rng());
    nk_block* blk;
    int rc = nk_block_new(data, len, true, &blk);
    if (rc != NOKV_OK) {
      ASSERT_EQ(rc, NOKV_ECORRUPT);
      rejected++;
      continue;
    }
    nk_iter* it = nk_block_iter_new(blk, nullptr, nullptr, nullptr);
    for (nk_iter_seek_first(it); nk_iter_valid(it); nk_iter_next(it)) {
      size_t kn;
      nk_iter_key(it, &kn);
      ASSERT_GE(kn, 8u);  // every key it yields is a whole internal key
    }
    int st = nk_iter_status(it);
    ASSERT_TRUE(st == NOKV_OK || st == NOKV_ECORRUPT) << st;
    corrupt_entries += st == NOKV_ECORRUPT;
    std::string t = IKey("k", 1);
    nk_iter_seek(it, t.data(), t.size());
    nk_buf scratch = {};
    nk_block_entry e;
    int frc = nk_block_find(blk, t.data(), t.size(), &scratch, &e);
    ASSERT_TRUE(frc == NOKV_OK || frc == NOKV_ENOTFOUND || frc == NOKV_ECORRUPT) << frc;
    if (frc == NOKV_OK) {
      ASSERT_GE(e.klen, 8u);
    }
    nk_buf_release(&scratch);
    nk_iter_destroy(it);
    nk_block_free(blk);
  }
  // Random bytes are nearly always caught, by the restart array or an entry.
  EXPECT_GT(rejected + corrupt_entries, 1500);
}

TEST(BloomTest, NoFalseNegativesAndAboutOnePercentFalsePositives) {
  nk_bloom_builder b;
  nk_bloom_builder_init(&b, 10);
  for (int i = 0; i < 100000; i++) {
    std::string k = UserKey(i);
    ASSERT_TRUE(nk_bloom_add_hash(&b, nk_hash64(k.data(), k.size())));
  }
  nk_buf f = {};
  ASSERT_TRUE(nk_bloom_finish(&b, &f));
  for (int i = 0; i < 100000; i++) {
    std::string k = UserKey(i);
    ASSERT_TRUE(nk_bloom_may_match(f.data, f.len, nk_hash64(k.data(), k.size())));
  }
  int fp = 0;
  for (int i = 100000; i < 200000; i++) {
    std::string k = UserKey(i);
    fp += nk_bloom_may_match(f.data, f.len, nk_hash64(k.data(), k.size()));
  }
  EXPECT_LT(fp, 2000);  // < 2%
  EXPECT_GT(fp, 100);   // a filter this small cannot be perfect
  nk_buf_release(&f);
  nk_bloom_builder_release(&b);
}

class TableTest : public ::testing::TestWithParam<nk_compression> {
 protected:
  // Builds a table with keys 0, 2, 4, ... (two versions each: ts 10 value,
  // ts 20 value or, every 7th key, a deletion).
  void Build(int n, int bloom_bits = 10) {
    path_ = dir_.file("00000001.sst");
    nk_file* f;
    ASSERT_EQ(nk_env_posix()->open_append(nk_env_posix(), path_.c_str(), true, &f), NOKV_OK);
    nk_table_options o = {4096, 16, bloom_bits, GetParam(), 1};
    nk_table_builder* b;
    ASSERT_EQ(nk_table_builder_new(&o, f, &b), NOKV_OK);
    for (int i = 0; i < n; i++) {
      std::string k = UserKey(i * 2);
      std::string v1 = "new-" + std::to_string(i) + std::string(100, 'x');
      std::string v0 = "old-" + std::to_string(i) + std::string(100, 'y');
      std::string k20 = IKey(k, 20, i % 7 == 0 ? NK_KIND_DELETE : NK_KIND_VALUE);
      std::string k10 = IKey(k, 10);
      ASSERT_EQ(nk_table_builder_add(b, k20.data(), k20.size(), i % 7 == 0 ? "" : v1.data(),
                                     i % 7 == 0 ? 0 : v1.size()),
                NOKV_OK);
      ASSERT_EQ(nk_table_builder_add(b, k10.data(), k10.size(), v0.data(), v0.size()), NOKV_OK);
    }
    nk_table_props props;
    ASSERT_EQ(nk_table_builder_finish(b, &props, &size_), NOKV_OK);
    EXPECT_EQ(props.entries, 2u * n);
    EXPECT_EQ(props.min_ts, 10u);
    EXPECT_EQ(props.max_ts, 20u);
    EXPECT_EQ(props.tombstones, static_cast<uint64_t>((n + 6) / 7));
    nk_table_props_release(&props);
    nk_table_builder_free(b);
    ASSERT_EQ(nk_file_sync(f), NOKV_OK);
    ASSERT_EQ(nk_file_close(f), NOKV_OK);
  }

  int GetAt(nk_table* t, const std::string& key, uint64_t ts, nk_get_result* r) {
    std::string target = IKey(key, ts, NK_KIND_SEEK);
    return nk_table_get(t, target.data(), target.size(), nk_hash64(key.data(), key.size()), r);
  }

  TempDir dir_;
  std::string path_;
  uint64_t size_ = 0;
  nk_sst_stats stats_ = {};
};

TEST_P(TableTest, GetSeesTheRightVersion) {
  Build(5000);
  nk_cache* cache = nk_cache_new(1 << 20, 2);
  nk_table* t;
  ASSERT_EQ(nk_table_open(nk_env_posix(), path_.c_str(), size_, cache, &stats_, &t), NOKV_OK);
  EXPECT_EQ(nk_table_properties(t)->entries, 10000u);
  for (int i = 0; i < 10000; i++) {
    nk_get_result r;
    ASSERT_EQ(GetAt(t, UserKey(i), 100, &r), NOKV_OK);
    if (i % 2 == 1) {
      EXPECT_FALSE(r.found) << i;
      continue;
    }
    ASSERT_TRUE(r.found) << i;
    EXPECT_EQ(r.ts, 20u);
    if ((i / 2) % 7 == 0) {
      EXPECT_EQ(r.kind, NK_KIND_DELETE);
    } else {
      ASSERT_EQ(r.kind, NK_KIND_VALUE);
      EXPECT_EQ(std::string(r.val, 4), "new-");
    }
    free(r.val);
    ASSERT_EQ(GetAt(t, UserKey(i), 15, &r), NOKV_OK);
    ASSERT_TRUE(r.found);
    EXPECT_EQ(r.ts, 10u);
    EXPECT_EQ(std::string(r.val, 4), "old-");
    free(r.val);
    ASSERT_EQ(GetAt(t, UserKey(i), 5, &r), NOKV_OK);
    EXPECT_FALSE(r.found);
  }
  // The filter answered most absent keys without a block read.
  EXPECT_GT(stats_.bloom_negatives, 4500u);
  nk_cache_stats cs;
  nk_cache_get_stats(cache, &cs);
  EXPECT_GT(stats_.block_reads, 0u);
  if (GetParam() == NK_COMPRESS_ZSTD) {
    // Decompressed blocks go through the cache.
    EXPECT_GT(cs.hits, 0u);
    EXPECT_GT(cs.misses, 0u);
  } else {
    // Raw blocks of a mapped table are used in place, never copied into it.
    EXPECT_EQ(cs.hits + cs.misses, 0u);
  }
  nk_table_close(t);
  nk_cache_free(cache);
}

TEST_P(TableTest, IteratorScansAndSeeks) {
  Build(3000);
  nk_table* t;
  ASSERT_EQ(nk_table_open(nk_env_posix(), path_.c_str(), size_, nullptr, &stats_, &t), NOKV_OK);
  nk_iter* it = nk_table_iter_new(t);
  int n = 0;
  std::string prev;
  for (nk_iter_seek_first(it); nk_iter_valid(it); nk_iter_next(it)) {
    size_t kn;
    const char* k = nk_iter_key(it, &kn);
    std::string cur(k, kn);
    if (n > 0) {
      ASSERT_LT(nk_ikey_cmp(prev.data(), prev.size(), cur.data(), cur.size()), 0);
    }
    prev = cur;
    n++;
  }
  EXPECT_EQ(nk_iter_status(it), NOKV_OK);
  EXPECT_EQ(n, 6000);
  std::string target = IKey(UserKey(1001), NK_MAX_TS, NK_KIND_SEEK);
  nk_iter_seek(it, target.data(), target.size());
  ASSERT_TRUE(nk_iter_valid(it));
  size_t kn;
  const char* k = nk_iter_key(it, &kn);
  EXPECT_EQ(std::string(k, kn - 8), UserKey(1002));
  // Seeks landing all over the table, each followed by a walk across block
  // boundaries, see every entry with its own value: the iterator re-aimed from
  // block to block (mapped raw blocks are borrowed in place) keeps nothing of
  // the block before.
  for (int start = 0; start < 3000; start += 37) {
    std::string from = IKey(UserKey(start * 2), NK_MAX_TS, NK_KIND_SEEK);
    nk_iter_seek(it, from.data(), from.size());
    for (int e = 2 * start; e < std::min(6000, 2 * start + 90); e++, nk_iter_next(it)) {
      ASSERT_TRUE(nk_iter_valid(it)) << e;
      int i = e / 2;
      bool newer = e % 2 == 0;
      k = nk_iter_key(it, &kn);
      ASSERT_EQ(std::string(k, kn - 8), UserKey(i * 2)) << e;
      EXPECT_EQ(nk_trailer_ts(nk_ikey_trailer(k, kn)), newer ? 20u : 10u) << e;
      size_t vn;
      const char* v = nk_iter_value(it, &vn);
      std::string want = newer && i % 7 == 0 ? ""
                         : (newer ? "new-" : "old-") + std::to_string(i) +
                               std::string(100, newer ? 'x' : 'y');
      ASSERT_EQ(std::string(v, vn), want) << e;
    }
  }
  EXPECT_EQ(nk_iter_status(it), NOKV_OK);
  nk_iter_destroy(it);
  nk_table_close(t);
}

TEST_P(TableTest, FlippedByteInADataBlockIsAChecksumError) {
  Build(2000);
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c;
    f.seekg(100);
    f.read(&c, 1);
    c ^= 0x40;
    f.seekp(100);
    f.write(&c, 1);
  }
  nk_table* t;
  ASSERT_EQ(nk_table_open(nk_env_posix(), path_.c_str(), size_, nullptr, &stats_, &t), NOKV_OK);
  nk_get_result r;
  EXPECT_EQ(GetAt(t, UserKey(0), 100, &r), NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("checksum mismatch"), std::string::npos)
      << nokv_errmsg();
  EXPECT_FALSE(r.found);
  nk_iter* it = nk_table_iter_new(t);
  nk_iter_seek_first(it);
  EXPECT_FALSE(nk_iter_valid(it));
  EXPECT_EQ(nk_iter_status(it), NOKV_ECORRUPT);
  nk_iter_destroy(it);
  // Keys in other blocks still read fine.
  ASSERT_EQ(GetAt(t, UserKey(3000), 100, &r), NOKV_OK);
  EXPECT_TRUE(r.found);
  free(r.val);
  EXPECT_GE(stats_.checksum_errors, 2u);
  nk_table_close(t);
}

TEST_P(TableTest, DamagedFooterOrWrongSizeFailsOpen) {
  Build(100);
  nk_table* t;
  EXPECT_EQ(nk_table_open(nk_env_posix(), path_.c_str(), size_ + 1, nullptr, &stats_, &t),
            NOKV_ECORRUPT);
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(size_ - 3));
    f.write("zzz", 3);
  }
  EXPECT_EQ(nk_table_open(nk_env_posix(), path_.c_str(), size_, nullptr, &stats_, &t),
            NOKV_ECORRUPT);
  EXPECT_NE(std::string(nokv_errmsg()).find("footer"), std::string::npos) << nokv_errmsg();
}

INSTANTIATE_TEST_SUITE_P(Compression, TableTest,
                         ::testing::Values(NK_COMPRESS_NONE, NK_COMPRESS_ZSTD));

TEST(CacheTest, EvictsUnpinnedEntriesOnlyAndCountsHits) {
  static int freed;
  freed = 0;
  auto del = [](void* v) { freed++; free(v); };
  nk_cache* c = nk_cache_new(10, 0);
  nk_cache_handle* pinned = nk_cache_insert(c, 1, 0, malloc(1), 4, del);
  for (uint64_t i = 1; i <= 10; i++) nk_cache_release(c, nk_cache_insert(c, 1, i, malloc(1), 4, del));
  // Capacity 10, pinned entry uses 4: only one more 4-byte entry fits.
  EXPECT_EQ(freed, 9);
  nk_cache_handle* h = nk_cache_lookup(c, 1, 10);
  ASSERT_NE(h, nullptr);
  nk_cache_release(c, h);
  EXPECT_EQ(nk_cache_lookup(c, 1, 1), nullptr);
  nk_cache_erase(c, 1, 0);
  EXPECT_EQ(freed, 9);  // still pinned
  nk_cache_release(c, pinned);
  EXPECT_EQ(freed, 10);
  nk_cache_stats s;
  nk_cache_get_stats(c, &s);
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.usage, 4u);
  nk_cache_free(c);
  EXPECT_EQ(freed, 11);
}

// An evicted entry's deleter (for the table cache: unmapping and closing a
// table) runs after the shard's lock is released: a reader of the same shard
// does not wait for it. Here the deleter of the evicted entry looks another
// entry up in the same (only) shard; under the lock that would deadlock.
TEST(CacheTest, DeletersRunOutsideTheShardLock) {
  static nk_cache* c;
  static int looked_up;
  looked_up = 0;
  c = nk_cache_new(4, 0);
  auto plain = [](void* v) { free(v); };
  auto reentrant = [](void* v) {
    nk_cache_handle* h = nk_cache_lookup(c, 9, 9);
    if (h != nullptr) {
      looked_up++;
      nk_cache_release(c, h);
    }
    free(v);
  };
  nk_cache_handle* keep = nk_cache_insert(c, 9, 9, malloc(1), 1, plain);
  nk_cache_release(c, nk_cache_insert(c, 1, 1, malloc(1), 3, reentrant));
  // No room for this one: (1, 1) is evicted, and its deleter runs.
  nk_cache_release(c, nk_cache_insert(c, 2, 2, malloc(1), 3, plain));
  EXPECT_EQ(looked_up, 1);
  nk_cache_release(c, keep);
  nk_cache_free(c);
}

}  // namespace
