/* Value-log GC's entry points below the public API (gc.c), for the engine's
 * background thread and for white-box tests that need its work to happen at a
 * chosen point rather than after a wall-clock delay. */
#ifndef NOKV_DB_GC_INTERNAL_H
#define NOKV_DB_GC_INTERNAL_H

#include "nokv/db.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs one idle check now, as the GC thread does once no write has committed
 * for value_log_gc_idle_ms: flushes the memtable, measures each sealed
 * segment's dead share and collects those at or past value_log_gc_ratio.
 * Returns the flush's error, or the first collection's; a segment that could
 * not be measured or collected stays for the next check. */
int nk_db_idle_check(nokv_db *db);

#ifdef __cplusplus
}
#endif

#endif /* NOKV_DB_GC_INTERNAL_H */
