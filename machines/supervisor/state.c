/*
 * state.c - what the supervisor keeps across its own death (state_dir).
 *
 * With a state directory, every program has a durable machine of type
 * "sv-program" that holds its memory: whether it was held down (stopped
 * by hand, or fatal), its restart count, and the pid and start time of
 * its running child.  A coprocess sends it SV_EV_SAVE whenever one of
 * those changes; each save is one journaled step.
 *
 * After the supervisor is killed and started again, the journal brings
 * these machines back.  A program whose child is still alive (same pid
 * and the same start time in /proc, so a reused pid is never taken for
 * it) is adopted: watched through a pidfd, not started a second time; or,
 * with `orphans: stop`, adopted, stopped, and started afresh.  A program
 * held down stays down; if its child is still alive (the previous run
 * died during its stop), it is adopted and the stop is done again.  A saved program no longer in the configuration
 * has its leftover child killed.  A clean shutdown ends every record, so
 * the next start is a fresh one.
 *
 * A child's stdout and stderr are FIFOs in the state directory
 * (logpipe.c), which the child holds open for reading too: when the
 * supervisor dies, what the child writes waits in the FIFO, up to its
 * buffer (64 KiB on Linux), and then the child blocks in write until the
 * next run opens the FIFO again and reads it.  Nothing it writes is lost
 * but the part of a line the dead supervisor had read and not yet
 * written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sv.h"

typedef struct sv_saved {
  char name[64];
  uint8_t want_up, held_down, fatal, pad;
  uint32_t restarts;
  int32_t pid;
  uint32_t pad2;
  uint64_t start_time;
} sv_saved;

#define REC_POINTS(X) X(rec, keeping)
MLY_POINTS(rec, REC_POINTS);

static int rec_run(mly_machine *m, void *data) {
  sv_saved *d = data;
  MLY_BEGIN(m);
  for (;;) {
    MLY_AWAIT_AT(m, rec_keeping, SV_EV_SAVE, -1);
    if (mly_shutdown_requested(m)) break;
    const mly_event *e = mly_current_event(m);
    const void *p;
    size_t len;
    if (e && mly_value_get_bin(e->payload, &p, &len) == 0 && len == sizeof *d)
      memcpy(d, p, len);
  }
  MLY_END(m);
}

static int collect(const mly_info *i, void *arg) {
  sv *s = arg;
  if (strcmp(i->type, "sv-program") != 0) return 0;
  sv_saved *d = mly_instance_data(s->rt, i->id);
  sv_kept *v = realloc(s->kept, (s->nkept + 1) * sizeof *v);
  if (d == NULL || v == NULL) return v ? 0 : MLY_ENOMEM;
  s->kept = v;
  s->kept[s->nkept++] = (sv_kept){.id = i->id};
  snprintf(s->kept[s->nkept - 1].name, sizeof s->kept[0].name, "%s", d->name);
  return 0;
}

static int log_parked(const mly_parked *p, void *arg) {
  sv_logf(arg, "mealy", "record %llu (%s at %s) parked: %s",
          (unsigned long long)p->id, p->type, p->point, p->reason);
  return 0;
}

int sv_state_open(sv *s, const char *dir, char *err, size_t errlen) {
  int rc = mly_type_register(s->rt, &(mly_type_def){
      .name = "sv-program", .run = rec_run, MLY_TYPE_POINTS(rec),
      .data_size = sizeof(sv_saved), .version = 1,
      .flags = MLY_TYPE_DURABLE}, &s->rec_type);
  if (rc < 0) return rc;
  mly_journal_options o = {.dir = dir, .sync = s->cfg->sync,
                           .interval_ms = s->cfg->sync_interval_ms};
  rc = mly_journal_open(s->rt, &o, err, errlen);
  if (rc < 0) return rc;
  s->durable = true;
  /* the programs' output FIFOs live there too (logpipe.c) */
  s->state_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->state_fd < 0)
    sv_logf(s, "mealy", "cannot open %s for the output FIFOs: %s; output "
            "goes through pipes and is lost if the supervisor dies", dir,
            strerror(errno));
  mly_journal_stats st;
  mly_journal_stats_get(s->rt, &st);
  if (st.parked) {
    sv_logf(s, "mealy", "%llu saved records could not be resumed (kept "
            "for a later version)", (unsigned long long)st.parked);
    mly_journal_parked(s->rt, log_parked, s);
  }
  return mly_foreach(s->rt, collect, s);
}

static bool alive_as(int pid, uint64_t start) {
  uint64_t now;
  return pid > 0 && mly_process_start_time(pid, &now) == 0 && now == start;
}

void sv_state_attach(sv *s, sv_proc *p) {
  if (!s->durable) return;
  for (size_t i = 0; i < s->nkept; i++) {
    sv_kept *k = &s->kept[i];
    if (k->claimed || strcmp(k->name, p->name) != 0) continue;
    sv_saved *d = mly_instance_data(s->rt, k->id);
    if (d == NULL) continue;
    k->claimed = true;
    p->rec = k->id;
    p->restarts = d->restarts;
    p->fatal = d->fatal;
    p->held_down = d->held_down;
    if (d->held_down) {
      p->launched = true; /* down by hand or fatal: it stays down */
      sv_logf(s, p->name, "kept down, as before the restart%s",
              d->fatal ? " (fatal)" : "");
      /* the previous run died while it stopped it: what is left of it is
       * adopted, to finish that stop (the stop signal, the grace) */
      if (d->pid > 0 && alive_as(d->pid, d->start_time)) {
        p->adopt_pid = d->pid;
        p->adopt_start = d->start_time;
        p->adopt_to_stop = true;
        p->want_up = true;
      }
    } else if (d->pid > 0 && alive_as(d->pid, d->start_time)) {
      p->adopt_pid = d->pid;
      p->adopt_start = d->start_time;
      p->want_up = true;
      p->launched = true;
    } else if (d->pid > 0) {
      sv_logf(s, p->name, "pid %d of the previous run is gone: starting anew",
              d->pid);
    }
    return;
  }
  sv_saved d = {0};
  snprintf(d.name, sizeof d.name, "%s", p->name);
  if (mly_spawn(s->rt, s->rec_type, &d, sizeof d, &p->rec) < 0) p->rec = 0;
}

/* Saved programs no longer configured: their child, if alive, goes. */
void sv_state_leftovers(sv *s) {
  for (size_t i = 0; i < s->nkept; i++) {
    sv_kept *k = &s->kept[i];
    if (k->claimed) continue;
    k->claimed = true;
    sv_saved *d = mly_instance_data(s->rt, k->id);
    if (d && d->pid > 0) {
      int fd = (int)syscall(SYS_pidfd_open, d->pid, 0);
      /* the pidfd pins the pid: the start time check then holds */
      if (fd >= 0 && alive_as(d->pid, d->start_time)) {
        sv_logf(s, k->name, "no longer configured: SIGKILL to what is left "
                "of its group %d", d->pid);
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
        kill(-d->pid, SIGKILL);
      }
      if (fd >= 0) close(fd);
    }
    mly_shutdown(s->rt, k->id);
  }
}

void sv_state_save(sv_proc *p) {
  sv *s = p->sv;
  if (!s->durable || p->rec == 0) return;
  sv_saved d = {0};
  snprintf(d.name, sizeof d.name, "%s", p->name);
  d.want_up = p->want_up;
  d.held_down = p->held_down || p->fatal;
  d.fatal = p->fatal;
  d.restarts = p->restarts;
  d.pid = p->pid;
  d.start_time = p->pid > 0 ? p->start_time : 0;
  if (p->saved_once && memcmp(&d, p->saved, sizeof d) == 0) return;
  memcpy(p->saved, &d, sizeof d);
  p->saved_once = true;
  mly_runtime_send(s->rt, p->rec, SV_EV_SAVE, mly_value_bin(&d, sizeof d));
}

void sv_state_forget(sv_proc *p) {
  if (p->rec) mly_shutdown(p->sv->rt, p->rec);
  p->rec = 0;
}

_Static_assert(sizeof(sv_saved) <= SV_SAVED_MAX, "sv_proc.saved is too small");
