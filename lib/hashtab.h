/*
 * hashtab.h - uthash as lib/ uses it: an allocation that fails leaves
 * the table as it was and sets the caller's `hash_oom` (each function
 * that adds declares `bool hash_oom = false;` and tests it after).
 */
#ifndef MLY_HASHTAB_H
#define MLY_HASHTAB_H

#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (hash_oom = true)
#include <uthash.h>

#endif
