/* clock.c — the wall clock's test override (clock.h). */
#include "util/clock.h"

uint64_t (*nk_wall_clock_override)(void);
