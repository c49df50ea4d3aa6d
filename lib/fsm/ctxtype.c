/*
 * ctxtype.c - a machine's context_types, enforced.  Fantasm cast strings
 * back into types on every task; here the context is typed already, so
 * the declared types are checked instead: at mly_fsm_start, and when a
 * dispatch commits (a dispatch that leaves a declared key with another
 * type fails for good: no retry makes it right).  A key that is absent
 * is fine; "any" accepts everything.
 */
#include <stdio.h>
#include <string.h>

#include "fsmrt.h"

const char *fsm_ctype_name(fsm_ctype t) {
  static const char *const n[] = {"any",    "int",    "uint",     "float",
                                  "bool",   "string", "binary", "datetime",
                                  "map"};
  return (unsigned)t < sizeof n / sizeof n[0] ? n[t] : "?";
}

/* A value's type in the file's words. */
static const char *value_kind(const mly_value *v) {
  static const char *const n[] = {"nil",   "bool",   "int",  "uint", "float",
                                  "string", "binary", "list", "map"};
  unsigned k = (unsigned)mly_value_type(v);
  return k < sizeof n / sizeof n[0] ? n[k] : "?";
}

static bool fits(fsm_ctype t, const mly_value *v) {
  int64_t i;
  uint64_t u;
  switch (t) {
  case FSM_T_ANY: return true;
  case FSM_T_INT:
  case FSM_T_DATETIME: return mly_value_get_int(v, &i) == 0;
  case FSM_T_UINT: return mly_value_get_uint(v, &u) == 0;
  case FSM_T_FLOAT: {
    mly_vtype k = mly_value_type(v);
    return k == MLY_V_DOUBLE || k == MLY_V_INT || k == MLY_V_UINT;
  }
  case FSM_T_BOOL: return mly_value_type(v) == MLY_V_BOOL;
  case FSM_T_STRING: return mly_value_type(v) == MLY_V_STR;
  case FSM_T_BINARY: return mly_value_type(v) == MLY_V_BIN;
  case FSM_T_MAP: return mly_value_type(v) == MLY_V_MAP;
  }
  return false;
}

int fsm_ctx_check(const fsm_machine *def, const mly_value *ctx, char *err,
                  size_t errlen) {
  for (size_t i = 0; i < def->nctypes; i++) {
    const fsm_ctx_type *ct = &def->ctypes[i];
    const mly_value *v = mly_map_get(ctx, ct->key);
    /* `list` ([any]) still wants a list */
    if (v == NULL || (ct->type == FSM_T_ANY && !ct->list)) continue;
    if (ct->list && mly_value_type(v) == MLY_V_ARRAY) {
      for (size_t k = 0; k < mly_value_len(v); k++) {
        const mly_value *e = mly_array_at(v, k);
        if (fits(ct->type, e)) continue;
        snprintf(err, errlen,
                 "context key %s[%zu] is %s but machine %s declares it a "
                 "list of %s",
                 ct->key, k, value_kind(e), def->name, fsm_ctype_name(ct->type));
        return MLY_EINVAL;
      }
      continue;
    }
    if (ct->list || !fits(ct->type, v)) {
      snprintf(err, errlen,
               "context key %s is %s but machine %s declares it %s%s",
               ct->key, value_kind(v), def->name, ct->list ? "a list of " : "",
               fsm_ctype_name(ct->type));
      return MLY_EINVAL;
    }
  }
  return 0;
}
