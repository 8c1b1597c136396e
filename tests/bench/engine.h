/*
 * engine.h — the adapter every benchmarked engine implements, so NoKV-C, RocksDB
 * and LevelDB run the same workloads in the same process. Each adapter is
 * configured from one bench_config, so the settings that matter for fairness
 * (block cache, bloom bits, write buffer, compression, sync) are the same.
 */
#ifndef NOKV_BENCH_ENGINE_H
#define NOKV_BENCH_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bench_config {
  size_t block_cache_bytes;
  int bloom_bits;
  size_t write_buffer_bytes;
  size_t block_size;
  bool compression;   /* zstd (NoKV, RocksDB) / snappy (LevelDB) if true */
  bool sync;
  /* NoKV-C only: values of at least this many bytes go to the value log
   * (0: the engine's default). */
  size_t nokv_value_threshold;
  bool nokv_no_hot_keys;  /* NoKV-C: hot_key_tracking off */
  bool nokv_no_hot_cache; /* NoKV-C: hot_read_cache_bytes 0 */
} bench_config;

typedef struct bench_engine {
  const char *name;
  /* Opens a fresh database in dir; NULL (after printing why) on failure. */
  void *(*open)(const char *dir, const bench_config *cfg);
  void (*close)(void *db);
  bool (*put)(void *db, const char *k, size_t kl, const char *v, size_t vl);
  /* Reads k; *found says whether it exists. false on error. */
  bool (*get)(void *db, const char *k, size_t kl, bool *found);
  /* Seeks to k and reads up to n entries (keys and values); *got counts them. */
  bool (*scan)(void *db, const char *k, size_t kl, int n, int *got);
  bool (*del)(void *db, const char *k, size_t kl);
  /* Deletes [a, b) with the engine's range deletion; NULL if it has none. */
  bool (*delete_range)(void *db, const char *a, size_t al, const char *b, size_t bl);
  /* Compacts everything, waiting until done. */
  bool (*compact)(void *db);
} bench_engine;

extern const bench_engine bench_nokv, bench_rocksdb, bench_leveldb;

#endif /* NOKV_BENCH_ENGINE_H */
