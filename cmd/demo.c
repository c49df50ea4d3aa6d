/*
 * demo.c - `mealy demo` and `mealy demo-status`.
 *
 * `demo` runs the embedding demo in the foreground: MasterD waits for a
 * configuration (posted by a picker thread after --config-after, or sent
 * as "config NAME" to the line server), starts RT and app, and on Ctrl-C,
 * SIGTERM or the end of --for runs its shutdown routine.
 * `demo-status` asks a running demo for its instance table.
 */
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "cmd.h"
#include "demo.h"
#include "mealy.h"

static void demo_usage(FILE *f) {
  fprintf(f,
      "usage: mealy demo [--port N] [--config NAME] [--config-after DUR|never]\n"
      "                  [--for DUR] [--status-every DUR] [--recheck DUR]\n"
      "  --port N            line server on 127.0.0.1:N (default 7070; 0: any)\n"
      "  --config NAME       the config the picker thread chooses (mill.ini)\n"
      "  --config-after DUR  when it chooses (default 3s; never: only by TCP)\n"
      "  --for DUR           shut down after DUR (default: at Ctrl-C)\n"
      "  --status-every DUR  print the instance table every DUR\n"
      "  --recheck DUR       MasterD's config re-check period (default 2s)\n");
}

int cmd_demo(int argc, char **argv) {
  demo_options o;
  demo_default_options(&o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int rc = 0;
    if (strcmp(a, "--help") == 0) {
      demo_usage(stdout);
      return 0;
    } else if (strcmp(a, "--port") == 0) {
      rc = opt_port("demo", a, v, &o.port);
    } else if (strcmp(a, "--config") == 0 && v) {
      o.config = v;
    } else if (strcmp(a, "--config-after") == 0 && v && !strcmp(v, "never")) {
      o.config_after_ms = -1;
    } else if (strcmp(a, "--config-after") == 0) {
      rc = opt_duration("demo", a, v, &o.config_after_ms);
    } else if (strcmp(a, "--for") == 0) {
      rc = opt_duration("demo", a, v, &o.run_for_ms);
    } else if (strcmp(a, "--status-every") == 0) {
      rc = opt_duration("demo", a, v, &o.status_every_ms);
    } else if (strcmp(a, "--recheck") == 0) {
      rc = opt_duration("demo", a, v, &o.recheck_ms);
      if (rc == 0 && o.recheck_ms <= 0) {
        fprintf(stderr, "mealy demo: --recheck must be more than 0\n");
        rc = -1;
      }
    } else {
      fprintf(stderr, "mealy demo: unknown option '%s'\n", a);
      demo_usage(stderr);
      return 2;
    }
    if (rc < 0) return 2;
    i++;
  }
  int rc = demo_run(&o);
  if (rc < 0) {
    fprintf(stderr, "mealy demo: %s\n", mly_strerror(rc));
    return 1;
  }
  return 0;
}

/* ---- demo-status: a tiny blocking client is all it needs ---- */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int cmd_demo_status(int argc, char **argv) {
  int port = 7070;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--port") == 0) {
      if (opt_port("demo-status", "--port", i + 1 < argc ? argv[i + 1] : NULL,
                   &port) < 0)
        return 2;
      i++;
    } else {
      fprintf(stderr, "usage: mealy demo-status [--port N]\n");
      return 2;
    }
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    fprintf(stderr, "mealy demo-status: no demo on 127.0.0.1:%d (%s)\n", port,
            mly_strerror(-errno));
    if (fd >= 0) close(fd);
    return 1;
  }
  static const char req[] = "status\nquit\n";
  if (write(fd, req, sizeof req - 1) != (ssize_t)(sizeof req - 1)) {
    close(fd);
    return 1;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  close(fd);
  return n < 0 ? 1 : 0;
}
