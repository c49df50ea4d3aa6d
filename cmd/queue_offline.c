/*
 * queue_offline.c - `mealy queue SUB --state-dir DIR`: the task queues of
 * a state directory with no host to ask.
 *
 * ls and show only read: the live instances as the journal holds them
 * (mly_queue_scan, mly_task_scan), with no lock taken, so they work
 * beside a running host too; then they say that a host holds DIR and
 * that its socket has its own view (limits, counters, what it has not
 * written yet).  A holder is found in /proc/locks (the flock on
 * DIR/LOCK), which asks without locking.
 *
 * add, retry, delete, purge, pause and resume change DIR, so they run
 * only when no host holds it: they open it as a host would (the lock
 * taken by mly_journal_open, recovery, the queue layer) with every queue
 * held (mly_queues_hold: no attempt starts, no function is needed), make
 * the change through the same calls the host's methods make, run the
 * loop until the change has stepped, and close, which writes it down.
 * A host started afterwards finds it.
 *
 * With --store CONNINFO (queue_store) ls and show read a PostgreSQL
 * store instead (mly_queue_scan_pg: one moment of every process's
 * tasks, nothing owned or locked); the changes are refused there.  Queues are declared as the
 * journal names them (by a task or a pause) and as the command names
 * one, with the defaults: nothing starts, so their limits do not matter
 * here; a queue only the host's files declare is not in the journal
 * until it holds a task or a pause, so any valid name is taken (a pause
 * of a name no host declares stays unused).  `add` cannot know the
 * host's functions: the function is registered here as a stand-in that
 * never runs; a host that lacks it fails the task for good.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fsmhost.h"

/* The process holding DIR/LOCK (an flock), 0: none (or unknown). */
static long lock_holder(const char *dir) {
  char path[4096];
  struct stat st;
  if (snprintf(path, sizeof path, "%s/LOCK", dir) >= (int)sizeof path ||
      lstat(path, &st) != 0)
    return 0;
  char want[64];
  snprintf(want, sizeof want, "%02x:%02x:%llu", major(st.st_dev),
           minor(st.st_dev), (unsigned long long)st.st_ino);
  FILE *f = fopen("/proc/locks", "re");
  if (f == NULL) return 0;
  char line[512];
  long pid = 0;
  while (pid == 0 && fgets(line, sizeof line, f)) {
    char kind[16], mode[16], rw[16], dev[64];
    long p;
    /* "N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE START END"; a waiter
       has "->" after N: and is skipped by the scan's shape */
    if (sscanf(line, "%*d: %15s %15s %15s %ld %63s", kind, mode, rw, &p,
               dev) == 5 &&
        strcmp(kind, "FLOCK") == 0 && strcmp(dev, want) == 0)
      pid = p;
  }
  fclose(f);
  return pid;
}

static void held_by(const char *cmd, const char *dir, long pid,
                    bool refused) {
  fprintf(stderr,
          "%s: %s is in use by process %ld (a running host, which holds "
          "%s/LOCK)%s; ask it through its control socket: %s ... -s SOCKET "
          "(the host's --socket, default ./" FSM_DEFAULT_SOCKET ")\n",
          cmd, dir, pid, dir,
          refused ? ": nothing was changed"
                  : ": this is a moment of it as its journal holds it",
          cmd);
}

/* ---- reading ---- */

typedef struct found {
  const char *want;
  bool seen;
  mly_queue_info qi;
  mly_value *list; /* ls: every row */
  char **names;    /* every queue name, for the changes */
  size_t nnames;
} found;

static int queue_row(const mly_queue_info *qi, void *arg) {
  found *f = arg;
  if (f->list) {
    mly_value *m = mly_value_map();
    queue_put_info(m, qi, false);
    mly_array_push(f->list, m);
  }
  if (f->want && strcmp(f->want, qi->def.name) == 0) {
    f->seen = true;
    f->qi = *qi;
    f->qi.def.name = f->want;
  }
  char **v = realloc(f->names, (f->nnames + 1) * sizeof *v);
  if (v == NULL) return MLY_ENOMEM;
  f->names = v;
  if ((v[f->nnames] = strdup(qi->def.name)) == NULL) return MLY_ENOMEM;
  f->nnames++;
  return 0;
}

static void found_free(found *f) {
  for (size_t i = 0; i < f->nnames; i++) free(f->names[i]);
  free(f->names);
  mly_value_free(f->list);
}

/* Where the tasks are read: a state directory, or a PostgreSQL store
 * (conninfo set; never printed: it may hold a password). */
typedef struct qsrc {
  const char *dir, *conninfo;
} qsrc;

static const char *src_name(const qsrc *s) {
  return s->conninfo ? "the PostgreSQL store" : s->dir;
}

static int scan_src(const char *cmd, const qsrc *s, found *f) {
  char err[512] = "";
  int rc = s->conninfo
               ? mly_queue_scan_pg(s->conninfo, queue_row, f, err, sizeof err)
               : mly_queue_scan(s->dir, queue_row, f, err, sizeof err);
  if (rc < 0)
    fprintf(stderr, "%s: %s\n", cmd, err[0] ? err : mly_strerror(rc));
  return rc;
}

static int scan(const char *cmd, const char *dir, found *f) {
  qsrc s = {.dir = dir};
  return scan_src(cmd, &s, f);
}

static int show(const char *cmd, const qsrc *src, const char *q,
                mly_value **res) {
  found f = {.want = q};
  if (scan_src(cmd, src, &f) < 0) {
    found_free(&f);
    return 1;
  }
  if (!f.seen) {
    fprintf(stderr, "%s: no queue '%.64s' in %s (no task or pause names "
            "it)\n", cmd, q, src_name(src));
    found_free(&f);
    return 1;
  }
  mly_value *m = mly_value_map(), *tasks = mly_value_array();
  queue_put_info(m, &f.qi, false);
  char err[512] = "";
  int rc = src->conninfo
               ? mly_task_scan_pg(src->conninfo, q, MLY_TASKS_ALL,
                                  queue_put_task, tasks, err, sizeof err)
               : mly_task_scan(src->dir, q, MLY_TASKS_ALL, queue_put_task,
                               tasks, err, sizeof err);
  found_free(&f);
  mly_map_set(m, "tasks", tasks);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", cmd, err[0] ? err : mly_strerror(rc));
    mly_value_free(m);
    return 1;
  }
  *res = m;
  return 0;
}

/* ---- changing ---- */

typedef struct offline {
  uv_loop_t loop;
  mly_runtime *rt;
  int added;      /* add: 1 once durable, < 0 its error */
  mly_id id;
} offline;

static void never_runs(mly_task *t, void *arg) { /* held: not called */
  (void)arg;
  mly_task_done(t, MLY_TASK_RETRY_SINGULAR, "not run here");
}

static void on_added(mly_runtime *rt, int status, mly_id id, void *arg) {
  (void)rt, (void)id;
  offline *o = arg;
  o->added = status < 0 ? status : 1;
}

/* Open dir as a host would, with every queue held and those the journal
 * names declared; 0 or 1 (said). */
static int open_dir(const char *cmd, const char *dir, const found *f,
                    const char *queue, const char *fn, offline *o) {
  char err[1024] = "";
  int rc = uv_loop_init(&o->loop);
  if (rc == 0) rc = mly_runtime_new(&o->rt, &o->loop, NULL);
  if (rc == 0) rc = mly_queues_open(o->rt);
  if (rc == 0) rc = mly_queues_hold(o->rt, true);
  for (size_t i = 0; rc == 0 && i <= f->nnames; i++) {
    const char *n = i < f->nnames ? f->names[i] : queue;
    if (n == NULL) continue;
    mly_queue_def d = {.name = n, .retry = MLY_RETRY_UNSET};
    rc = mly_queue_declare(o->rt, &d, err, sizeof err);
    if (rc == MLY_EEXIST) rc = 0;
  }
  if (rc == 0 && fn) rc = mly_defer_register(o->rt, fn, never_runs, NULL, 0);
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", cmd, err[0] ? err : mly_strerror(rc));
    return 1;
  }
  mly_journal_options jo = {.dir = dir, .sync = MLY_SYNC_ALWAYS};
  rc = mly_journal_open(o->rt, &jo, err, sizeof err);
  if (rc == MLY_EBUSY) { /* a host started since the check */
    long pid = lock_holder(dir);
    if (pid) held_by(cmd, dir, pid, true);
    else fprintf(stderr, "%s: %s\n", cmd, err);
    return 1;
  }
  if (rc < 0) {
    fprintf(stderr, "%s: %s\n", cmd, err);
    return 1;
  }
  return 0;
}

static void close_dir(offline *o) {
  if (o->rt) {
    mly_runtime_close(o->rt);
    uv_run(&o->loop, UV_RUN_DEFAULT); /* its handles' close callbacks */
    o->rt = NULL;
  }
  uv_loop_close(&o->loop);
}

/* Is the change made (stepped: closing writes it down)? */
typedef struct goal {
  const char *sub, *queue;
  mly_id id;
  bool paused;
} goal;

static int count_task(const mly_task_info *t, void *arg) {
  (void)t;
  (*(size_t *)arg)++;
  return 0;
}

static bool reached(offline *o, const goal *g) {
  mly_task_info ti;
  mly_queue_info qi;
  size_t n = 0;
  if (!strcmp(g->sub, "add")) return o->added != 0;
  if (!strcmp(g->sub, "retry"))
    return mly_task_info_get(o->rt, g->id, &ti) < 0 ||
           ti.state != MLY_TASK_DEAD;
  if (!strcmp(g->sub, "delete"))
    return mly_task_info_get(o->rt, g->id, &ti) == MLY_ESRCH;
  if (!strcmp(g->sub, "purge")) {
    mly_task_foreach(o->rt, g->queue, MLY_TASKS_ALL, count_task, &n);
    return n == 0;
  }
  return mly_queue_info_get(o->rt, g->queue, &qi) < 0 ||
         qi.paused_saved == g->paused;
}

/* Run the loop until the change stepped (bounded: 60 s of turns). */
static int settle(const char *cmd, offline *o, const goal *g) {
  for (int i = 0; i < 60000; i++) {
    uv_run(&o->loop, UV_RUN_NOWAIT);
    int jerr = mly_journal_error(o->rt);
    if (jerr < 0) {
      fprintf(stderr, "%s: the journal failed: %s\n", cmd,
              mly_strerror(jerr));
      return 1;
    }
    if (reached(o, g)) return 0;
    usleep(1000);
  }
  fprintf(stderr, "%s: the change did not complete; nothing more was "
          "done\n", cmd);
  return 1;
}

static mly_id task_id(const char *cmd, const char *s) {
  char *end;
  unsigned long long id = strtoull(s, &end, 10);
  if (*s == '\0' || *end || id == 0) {
    fprintf(stderr, "%s: '%s' is not a task id (a number from `mealy "
            "queue show`)\n", cmd, s);
    return 0;
  }
  return (mly_id)id;
}

static int change(const char *cmd, const char *sub, const char *dir,
                  char **pos, int npos, const char *name, mly_value **res) {
  goal g = {.sub = sub, .queue = pos[0]};
  const char *fn = NULL;
  mly_value *payload = NULL;
  if (!strcmp(sub, "retry") || !strcmp(sub, "delete")) {
    g.queue = NULL;
    if ((g.id = task_id(cmd, pos[0])) == 0) return 2;
  } else if (!strcmp(sub, "add")) {
    fn = pos[1];
    if ((payload = ctl_kv_map(cmd, pos + 2, npos - 2)) == NULL) return 2;
  }
  g.paused = !strcmp(sub, "pause");
  long pid = lock_holder(dir);
  found f = {.want = g.queue};
  int st = 0;
  if (pid) {
    held_by(cmd, dir, pid, true);
    st = 1;
  } else if (scan(cmd, dir, &f) < 0) {
    st = 1;
  }
  if (st) {
    found_free(&f);
    mly_value_free(payload);
    return st;
  }
  /* a queue DIR knows nothing of: what its host declares is not known
   * here; accepted, and said (a host that does not declare it lists the
   * task as waiting for the queue, never hides it) */
  bool known = g.queue == NULL || !strcmp(g.queue, MLY_QUEUE_DEFAULT);
  for (size_t i = 0; i < f.nnames && !known; i++)
    known = strcmp(f.names[i], g.queue) == 0;
  offline o = {0};
  st = open_dir(cmd, dir, &f, g.queue, fn, &o);
  found_free(&f);
  if (st == 0 && !known && !strcmp(sub, "add"))
    fprintf(stderr, "%s: note: no task or pause in %s names queue '%.64s': "
            "a host runs the task only if it declares that queue (until "
            "then `mealy queue ls` lists the queue as not declared)\n",
            cmd, dir, g.queue);
  int rc = 0;
  size_t purged = 0;
  mly_name_info ex;
  memset(&ex, 0, sizeof ex);
  if (st == 0) {
    if (!strcmp(sub, "add")) {
      mly_task_opts opt = {.queue = g.queue, .name = name, .id_out = &o.id,
                           .exists = &ex, .on_added = on_added, .arg = &o};
      rc = mly_defer(o.rt, fn, payload, &opt);
      payload = NULL;
    } else if (!strcmp(sub, "retry")) {
      rc = mly_task_retry(o.rt, g.id, NULL);
    } else if (!strcmp(sub, "delete")) {
      rc = mly_task_delete(o.rt, g.id);
    } else if (!strcmp(sub, "purge")) {
      rc = mly_queue_purge(o.rt, g.queue, &purged);
    } else {
      rc = g.paused ? mly_queue_pause(o.rt, g.queue)
                    : mly_queue_resume(o.rt, g.queue);
    }
    char why[512];
    if (rc < 0 && !strcmp(sub, "add"))
      fprintf(stderr, "%s: %s\n", cmd, queue_add_refusal(o.rt, rc, g.queue,
              fn, name, &ex, why, sizeof why));
    else if (rc == MLY_ESRCH)
      fprintf(stderr, "%s: no such task %llu\n", cmd,
              (unsigned long long)g.id);
    else if (rc == MLY_EINVAL && !strcmp(sub, "retry"))
      fprintf(stderr, "%s: task %llu is not a dead letter\n", cmd,
              (unsigned long long)g.id);
    else if (rc < 0)
      fprintf(stderr, "%s: %s\n", cmd, mly_strerror(rc));
    st = rc < 0 ? 1 : settle(cmd, &o, &g);
    if (st == 0 && o.added < 0) {
      fprintf(stderr, "%s: the task was not written: %s\n", cmd,
              mly_strerror(o.added));
      st = 1;
    }
  }
  mly_value_free(payload);
  close_dir(&o);
  if (st == 0 && !strcmp(sub, "add")) {
    *res = mly_value_map();
    mly_map_set_uint(*res, "id", o.id);
  } else if (st == 0 && !strcmp(sub, "purge")) {
    *res = mly_value_map();
    mly_map_set_uint(*res, "deleted", purged);
  }
  return st;
}

/* ls or show from src: 0 or 1 (said). */
static int list(const char *cmd, const char *sub, const qsrc *src,
                char **pos, mly_value **res) {
  if (strcmp(sub, "ls") != 0) return show(cmd, src, pos[0], res);
  found f = {.list = mly_value_array()};
  int st = scan_src(cmd, src, &f) < 0;
  if (st == 0) *res = f.list, f.list = NULL;
  found_free(&f);
  return st;
}

int queue_offline(const char *cmd, const char *sub, const char *dir,
                  char **pos, int npos, const char *name, mly_value **res) {
  *res = NULL;
  bool ro = !strcmp(sub, "ls") || !strcmp(sub, "show");
  if (!ro) return change(cmd, sub, dir, pos, npos, name, res);
  qsrc src = {.dir = dir};
  int st = list(cmd, sub, &src, pos, res);
  long pid = st == 0 ? lock_holder(dir) : 0;
  if (pid) held_by(cmd, dir, pid, false);
  return st;
}

/* --store CONNINFO: read only.  A task or a queue's state is a durable
 * instance owned by one running process under its lease; a change made
 * from here would have to own it (register as a node, claim, commit
 * under the fence) while that process runs it: refused, the way to make
 * it said. */
int queue_store(const char *cmd, const char *sub, const char *conninfo,
                char **pos, mly_value **res) {
  *res = NULL;
  if (strcmp(sub, "ls") != 0 && strcmp(sub, "show") != 0) {
    fprintf(stderr, "%s: --store reads only (ls, show): a task belongs to "
            "the process that runs it; make the change through a running "
            "host: %s ... -s SOCKET (the host's --socket); nothing was "
            "changed\n", cmd, cmd);
    return 1;
  }
  qsrc src = {.conninfo = conninfo};
  return list(cmd, sub, &src, pos, res);
}
