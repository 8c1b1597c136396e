/* nokv.h — the whole public API of NoKV-C. */
#ifndef NOKV_NOKV_H
#define NOKV_NOKV_H

#include "nokv/batch.h"
#include "nokv/db.h"
#include "nokv/options.h"
#include "nokv/stats.h"
#include "nokv/status.h"
#include "nokv/txn.h"
#include "nokv/watch.h"

#endif /* NOKV_NOKV_H */
