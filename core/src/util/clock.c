/* clock.c — the wall clock's test override (clock.h). */
#include "util/clock.h"

#include "nokv/db.h"

uint64_t (*nk_wall_clock_override)(void);

uint64_t nokv_wall_clock_ms(void) { return nk_wall_ms(); }
