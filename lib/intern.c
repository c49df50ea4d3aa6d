/*
 * intern.c - event names to event ids.
 *
 * Machines wait for events by name ("config") or by number.  Names are
 * interned once per runtime into ids from MLY_EV_NAME_BASE up, so an
 * event carries a plain 32-bit id and matching never compares strings.
 * An open-addressing table (FNV-1a, linear probing, load <= 1/2) maps a
 * name to its index; the index array maps back for introspection.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static uint32_t fnv1a(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static int grow_table(mly_intern *t) {
  uint32_t tcap = t->tcap ? t->tcap * 2 : 64;
  uint32_t *tab = calloc(tcap, sizeof *tab);
  if (tab == NULL) return MLY_ENOMEM;
  for (uint32_t i = 0; i < t->n; i++) {
    uint32_t j = fnv1a(t->names[i]) & (tcap - 1);
    while (tab[j]) j = (j + 1) & (tcap - 1);
    tab[j] = i + 1;
  }
  free(t->table);
  t->table = tab;
  t->tcap = tcap;
  return 0;
}

int intern_get(mly_intern *t, const char *name, uint32_t *out) {
  if (name == NULL || *name == '\0') return MLY_EINVAL;
  size_t len = strlen(name);
  if (len > MLY_NAME_MAX) return MLY_ENAMETOOLONG;
  if (has_control(name)) return MLY_EINVAL;
  if (t->tcap) {
    uint32_t j = fnv1a(name) & (t->tcap - 1);
    for (; t->table[j]; j = (j + 1) & (t->tcap - 1)) {
      uint32_t i = t->table[j] - 1;
      if (strcmp(t->names[i], name) == 0) {
        *out = MLY_EV_NAME_BASE + i;
        return 0;
      }
    }
  }
  if (MLY_EV_NAME_BASE + t->n >= MLY_EV_NAME_MAX) return MLY_ENOSPC;
  if ((t->n + 1) * 2 > t->tcap && grow_table(t) < 0) return MLY_ENOMEM;
  if (t->n == t->cap) {
    uint32_t cap = t->cap ? t->cap * 2 : 16;
    char **names = realloc(t->names, cap * sizeof *names);
    if (names == NULL) return MLY_ENOMEM;
    t->names = names;
    t->cap = cap;
  }
  char *copy = strdup(name);
  if (copy == NULL) return MLY_ENOMEM;
  uint32_t j = fnv1a(name) & (t->tcap - 1);
  while (t->table[j]) j = (j + 1) & (t->tcap - 1);
  t->names[t->n] = copy;
  t->table[j] = ++t->n;
  *out = MLY_EV_NAME_BASE + t->n - 1;
  return 0;
}

const char *intern_name(const mly_intern *t, uint32_t id) {
  if (id < MLY_EV_NAME_BASE || id - MLY_EV_NAME_BASE >= t->n) return NULL;
  return t->names[id - MLY_EV_NAME_BASE];
}

void intern_free(mly_intern *t) {
  for (uint32_t i = 0; i < t->n; i++) free(t->names[i]);
  free(t->names);
  free(t->table);
  memset(t, 0, sizeof *t);
}
