/*
 * svmetrics.c - what the supervisor tells a monitoring system.
 *
 * The supervisor's figures are a metrics source of its runtime
 * (mly_metrics_source_add): one mly_metrics_write gives the runtime's
 * (instances, steps, journal) and then these, per program and for the
 * supervisor itself.  They are served two ways: `mealy ctl metrics`
 * (the control socket's `metrics` method answers the whole text), and,
 * with `metrics:` in the configuration, plain HTTP on a unix socket or
 * a loopback port (promhttp.c) for Prometheus to scrape.
 *
 * A program's state is a labelled gauge: one series per state the
 * coprocess machine has (coproc_states), 1 for the state it is in and 0
 * for the rest, so a query can sum by state and a series never vanishes
 * while the program is configured.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "promhttp.h"
#include "textbuf.h"
#include "sv.h"

#define SV_METRICS_TEXT_MAX (16u << 20) /* `ctl metrics` answer bound */

static void family(mly_metrics *mx, const char *name, mly_metric_type t,
                   const char *help) {
  mly_metrics_family(mx, name, t, help);
}

static void per_program_u64(mly_metrics *mx, sv *s, const char *name,
                            mly_metric_type t, const char *help,
                            uint64_t (*get)(const sv_proc *)) {
  family(mx, name, t, help);
  for (size_t i = 0; i < s->nprocs; i++) {
    const char *l[] = {"program", s->procs[i]->name, NULL};
    mly_metrics_sample_u64(mx, name, l, get(s->procs[i]));
  }
}

static uint64_t get_restarts(const sv_proc *p) { return p->restarts; }
static uint64_t get_ready(const sv_proc *p) { return p->ready; }
static uint64_t get_fatal(const sv_proc *p) { return p->fatal; }
static uint64_t get_pid(const sv_proc *p) { return p->pid > 0 ? (uint64_t)p->pid : 0; }

static void states(mly_metrics *mx, sv *s) {
  size_t n;
  const char *const *names = coproc_states(&n);
  family(mx, "mealy_supervisor_program_state", MLY_METRIC_GAUGE,
         "1 for the state each program is in, 0 for the others.");
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    char buf[32];
    const char *cur = sv_proc_state(s, p, buf, sizeof buf);
    bool known = false;
    for (size_t k = 0; k < n; k++) {
      const char *l[] = {"program", p->name, "state", names[k], NULL};
      bool here = strcmp(cur, names[k]) == 0;
      known |= here;
      mly_metrics_sample_u64(mx, "mealy_supervisor_program_state", l, here);
    }
    if (!known) { /* "gone": its machine ended (it is being removed) */
      const char *l[] = {"program", p->name, "state", cur, NULL};
      mly_metrics_sample_u64(mx, "mealy_supervisor_program_state", l, 1);
    }
  }
}

static void exits(mly_metrics *mx, sv *s) {
  family(mx, "mealy_supervisor_program_last_exit_code", MLY_METRIC_GAUGE,
         "Exit code of the program's last process, when it exited (not "
         "killed by a signal).");
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    if (!p->has_exit || p->last_signal != 0) continue;
    const char *l[] = {"program", p->name, NULL};
    mly_metrics_sample(mx, "mealy_supervisor_program_last_exit_code", l,
                       p->last_exit);
  }
  family(mx, "mealy_supervisor_program_last_exit_signal", MLY_METRIC_GAUGE,
         "Signal number that ended the program's last process, when one "
         "did.");
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    if (!p->has_exit || p->last_signal == 0) continue;
    char num[16]; /* past SIGRTMAX, not a signal: its number */
    const char *name = sv_signal_name(p->last_signal);
    snprintf(num, sizeof num, "%d", p->last_signal);
    const char *l[] = {"program", p->name, "signal", name ? name : num, NULL};
    mly_metrics_sample(mx, "mealy_supervisor_program_last_exit_signal", l,
                       p->last_signal);
  }
}

/* A counter per program and stream (0 stdout, 1 stderr). */
static void per_stream(mly_metrics *mx, sv *s, const char *name,
                       const char *help, bool dropped) {
  static const char *const stream[2] = {"stdout", "stderr"};
  family(mx, name, MLY_METRIC_COUNTER, help);
  for (size_t i = 0; i < s->nprocs; i++)
    for (int k = 0; k < 2; k++) {
      const sv_proc *p = s->procs[i];
      const char *l[] = {"program", p->name, "stream", stream[k], NULL};
      mly_metrics_sample_u64(mx, name, l,
                             dropped ? p->log_dropped[k] : p->log_bytes[k]);
    }
}

static void logs(mly_metrics *mx, sv *s) {
  per_stream(mx, s, "mealy_supervisor_program_logged_bytes_total",
             "Bytes of output lines passed on to a log file or our output.",
             false);
  per_stream(mx, s, "mealy_supervisor_program_dropped_lines_total",
             "Output lines dropped: a log that cannot rotate past twice its "
             "max_size, or our own output not read.", true);
}

static uint64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "re");
  unsigned long long size = 0, res = 0;
  if (f == NULL) return 0;
  if (fscanf(f, "%llu %llu", &size, &res) != 2) res = 0;
  fclose(f);
  return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void itself(mly_metrics *mx, sv *s) {
  struct rusage ru;
  double cpu = 0;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
          ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
  family(mx, "mealy_supervisor_cpu_seconds_total", MLY_METRIC_COUNTER,
         "CPU time of the supervisor process (user and system).");
  mly_metrics_sample(mx, "mealy_supervisor_cpu_seconds_total", NULL, cpu);
  family(mx, "mealy_supervisor_resident_memory_bytes", MLY_METRIC_GAUGE,
         "Resident memory of the supervisor process.");
  mly_metrics_sample_u64(mx, "mealy_supervisor_resident_memory_bytes", NULL,
                         rss_bytes());
  family(mx, "mealy_supervisor_uptime_seconds", MLY_METRIC_GAUGE,
         "Seconds since the supervisor started.");
  mly_metrics_sample(mx, "mealy_supervisor_uptime_seconds", NULL,
                     (double)(uv_hrtime() / 1000000u - s->started_ms) / 1e3);
  family(mx, "mealy_supervisor_control_connections", MLY_METRIC_GAUGE,
         "Open connections to the control socket.");
  mly_metrics_sample_u64(mx, "mealy_supervisor_control_connections", NULL,
                         ctl_clients(s));
  family(mx, "mealy_supervisor_metrics_connections", MLY_METRIC_GAUGE,
         "Open connections to the metrics listener (this scrape's too).");
  mly_metrics_sample_u64(mx, "mealy_supervisor_metrics_connections", NULL,
                         promhttp_clients(s->metrics));
  family(mx, "mealy_supervisor_spawns_total", MLY_METRIC_COUNTER,
         "Processes the supervisor has spawned.");
  mly_metrics_sample_u64(mx, "mealy_supervisor_spawns_total", NULL, s->spawns);
}

static int source(mly_metrics *mx, void *arg) {
  sv *s = arg;
  states(mx, s);
  per_program_u64(mx, s, "mealy_supervisor_program_restarts_total",
                  MLY_METRIC_COUNTER, "Times the program was started again.",
                  get_restarts);
  exits(mx, s);
  family(mx, "mealy_supervisor_program_uptime_seconds", MLY_METRIC_GAUGE,
         "Seconds the program's current process has run (0: none).");
  uint64_t now = uv_hrtime() / 1000000u;
  for (size_t i = 0; i < s->nprocs; i++) {
    const sv_proc *p = s->procs[i];
    const char *l[] = {"program", p->name, NULL};
    double up = p->pid > 0 ? (double)(now - p->started_ms) / 1e3 : 0;
    mly_metrics_sample(mx, "mealy_supervisor_program_uptime_seconds", l, up);
  }
  per_program_u64(mx, s, "mealy_supervisor_program_ready", MLY_METRIC_GAUGE,
                  "1 when the program is up and ready (dependents may "
                  "start).", get_ready);
  per_program_u64(mx, s, "mealy_supervisor_program_fatal", MLY_METRIC_GAUGE,
                  "1 when the supervisor gave up on the program.", get_fatal);
  per_program_u64(mx, s, "mealy_supervisor_program_pid", MLY_METRIC_GAUGE,
                  "Pid of the program's process (0: none).", get_pid);
  logs(mx, s);
  itself(mx, s);
  return 0;
}

/* ---- `ctl metrics`: the text in one str ---- */

const char *sv_metrics_text(sv *s, mly_value **out) {
  textbuf b = {.max = SV_METRICS_TEXT_MAX};
  int rc = mly_metrics_write(s->rt, textbuf_put, &b);
  *out = rc == 0 ? mly_value_strn(b.p ? b.p : "", b.n) : NULL;
  textbuf_free(&b);
  if (rc == MLY_ENOSPC) return "the metrics text is larger than 16 MiB";
  if (rc != 0 || *out == NULL) return "out of memory building the metrics";
  return NULL;
}

/* ---- the listener ---- */

static int http_body(void *ud, mly_metrics_write_fn write, void *warg) {
  sv *s = ud;
  return mly_metrics_write(s->rt, write, warg);
}

static void http_log(void *ud, const char *msg) {
  sv *s = ud;
  sv_logf_rl(s, &s->metrics_rl, "metrics", "%s", msg);
}

int sv_metrics_start(sv *s, char *err, size_t errlen) {
  s->started_ms = uv_hrtime() / 1000000u;
  int rc = mly_metrics_source_add(s->rt, source, s);
  if (rc < 0) {
    snprintf(err, errlen, "metrics: %s", mly_strerror(rc));
    return rc;
  }
  if (s->cfg->metrics == NULL) return 0;
  promhttp_config c = {.loop = s->loop, .listen = s->cfg->metrics,
                       .mode = s->cfg->socket_mode, .body = http_body,
                       .ud = s, .log = http_log};
  char why[1024];
  rc = promhttp_start(&c, &s->metrics, why, sizeof why);
  if (rc < 0) {
    snprintf(err, errlen, "metrics: %s", why);
    return rc;
  }
  const char *where = promhttp_where(s->metrics);
  if (strchr(where, '/'))
    sv_logf(s, "mealy", "metrics: HTTP on the unix socket %s", where);
  else
    sv_logf(s, "mealy", "metrics on http://%s/metrics", where);
  return 0;
}

void sv_metrics_stop(sv *s) {
  if (s->metrics == NULL) return;
  sv_rl_flush(s, &s->metrics_rl, "metrics");
  promhttp_stop(s->metrics);
  s->metrics = NULL;
}
