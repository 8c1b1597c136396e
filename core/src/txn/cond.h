/*
 * cond.h — test hook of nokv_write_if (cond.c); the API is in nokv/db.h.
 */
#ifndef NOKV_TXN_COND_H
#define NOKV_TXN_COND_H

#include "nokv/db.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Called by nokv_write_if after it judged the conditions true and before it
 * commits (NULL: nothing), so a test can land a write in between. */
extern void (*nk_write_if_judged)(nokv_db *db, void *arg);
extern void *nk_write_if_judged_arg;

#ifdef __cplusplus
}
#endif

#endif /* NOKV_TXN_COND_H */
