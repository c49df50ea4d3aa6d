/*
 * store.c - `mealy store init|migrate|stat --store CONNINFO`: the
 * PostgreSQL store's schema (lib/store/pg_schema.c).  CONNINFO is a libpq
 * connection string or a postgresql:// URI.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: mealy store ACTION [--store CONNINFO] [--json | --bad]\n"
          "\n"
          "The PostgreSQL store's schema (programs open the store with\n"
          "mly_store_postgres).  CONNINFO: postgresql://... or\n"
          "'host=DIR dbname=NAME ...'.\n"
          "\n"
          "actions:\n"
          "  init     create the schema (version %d) in one transaction;\n"
          "           nothing to do when it is there\n"
          "  migrate  move an older schema forward in one transaction\n"
          "  stat     print the schema version and counts of instances,\n"
          "           tombstones, leases, pending events, timers and\n"
          "           processes\n"
          "\n"
          "init and migrate refuse a database whose schema is newer than\n"
          "this mealy's.  Exit status: 0 done, 1 failed, 2 bad usage.\n"
          "\n"
          "options:\n"
          "  --store CONNINFO  the database (required, unless MEALY_STORE\n"
          "                    in the environment holds it: argv is shown\n"
          "                    by ps to every user, the environment is not)\n"
          "  --bad             stat: list the rows no process can restore\n"
          "                    (a process refuses to open on them), each\n"
          "                    with the way out; exit 1 when there is one\n"
          "  --json            stat: one JSON object\n"
          "  -h, --help        this text\n",
          MLY_STORE_PG_VERSION);
}

static int fail(const char *action, int rc, const char *msg) {
  fprintf(stderr, "mealy store %s: %s\n", action,
          msg[0] ? msg : mly_strerror(rc));
  return 1;
}

static int print_bad(const char *row, void *arg) {
  (void)arg;
  printf("%s\n", row);
  return 0;
}

/* --bad: the rows no process can restore, one line each; exit 1 when
 * there is one. */
static int do_bad(const char *conninfo) {
  char msg[512] = "";
  uint64_t n = 0;
  int rc = mly_store_pg_bad(conninfo, print_bad, NULL, &n, msg, sizeof msg);
  if (rc < 0) return fail("stat", rc, msg);
  printf("%" PRIu64 " row(s) that cannot be restored\n", n);
  return fflush(stdout) == 0 && !ferror(stdout) && n == 0 ? 0 : 1;
}

static int do_stat(const char *conninfo, bool json) {
  char msg[512];
  mly_store_pg_counts st;
  int rc = mly_store_pg_stat(conninfo, &st, msg, sizeof msg);
  if (rc < 0) return fail("stat", rc, msg);
  if (json) {
    printf("{\"version\":%d,\"code_version\":%d,\"instances\":%" PRId64
           ",\"ended\":%" PRId64 ",\"owned\":%" PRId64 ",\"events\":%" PRId64
           ",\"timers\":%" PRId64 ",\"nodes\":%" PRId64 "}\n",
           st.version, st.code_version, st.instances, st.ended, st.owned,
           st.events, st.timers, st.nodes);
  } else {
    printf("schema version %d (this mealy: %d)\n"
           "instances %" PRId64 " live, %" PRId64 " ended, %" PRId64
           " under a lease\n"
           "pending events %" PRId64 "\ntimers %" PRId64 "\n"
           "processes %" PRId64 " holding a lease\n",
           st.version, st.code_version, st.instances, st.ended, st.owned,
           st.events, st.timers, st.nodes);
  }
  return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}

int cmd_store(int argc, char **argv) {
  const char *action = NULL, *conninfo = NULL;
  bool json = false, bad_rows = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--json") == 0) {
      json = true;
    } else if (strcmp(a, "--bad") == 0) {
      bad_rows = true;
    } else if (strcmp(a, "--store") == 0) {
      if (++i == argc) {
        fprintf(stderr, "mealy store: --store needs a CONNINFO\n");
        return 2;
      }
      conninfo = argv[i];
    } else if (strncmp(a, "--store=", 8) == 0) {
      conninfo = a + 8;
    } else if (a[0] == '-' && a[1] != '\0') {
      fprintf(stderr, "mealy store: unknown option '%s'\n", a);
      usage(stderr);
      return 2;
    } else if (action == NULL) {
      action = a;
    } else {
      fprintf(stderr, "mealy store: one ACTION only ('%s' is extra)\n", a);
      return 2;
    }
  }
  const char *bad = NULL;
  conninfo = opt_store(conninfo);
  if (action == NULL) bad = "an ACTION is needed (init, migrate, stat)";
  else if (strcmp(action, "init") && strcmp(action, "migrate") &&
           strcmp(action, "stat"))
    bad = "unknown ACTION (init, migrate, stat)";
  else if (conninfo == NULL || conninfo[0] == '\0')
    bad = "--store CONNINFO (or MEALY_STORE in the environment) is needed";
  else if (json && strcmp(action, "stat"))
    bad = "--json goes with stat only";
  else if (bad_rows && (strcmp(action, "stat") || json))
    bad = "--bad goes with stat only, without --json";
  if (bad) {
    fprintf(stderr, "mealy store: %s\n", bad);
    usage(stderr);
    return 2;
  }
  if (bad_rows) return do_bad(conninfo);
  if (strcmp(action, "stat") == 0) return do_stat(conninfo, json);
  char msg[512];
  int from = 0, rc;
  bool init = strcmp(action, "init") == 0;
  rc = init ? mly_store_pg_init(conninfo, &from, msg, sizeof msg)
            : mly_store_pg_migrate(conninfo, &from, msg, sizeof msg);
  if (rc < 0) return fail(action, rc, msg);
  if (from == MLY_STORE_PG_VERSION)
    printf("schema already at version %d: nothing to do\n", from);
  else if (from == 0)
    printf("schema created at version %d\n", MLY_STORE_PG_VERSION);
  else
    printf("schema migrated from version %d to %d\n", from,
           MLY_STORE_PG_VERSION);
  return 0;
}
