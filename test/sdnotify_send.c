/*
 * sdnotify_send - a tiny sd_notify sender for the supervisor's tests, as a
 * daemon built with libsystemd would speak: one datagram a message to
 * $NOTIFY_SOCKET (a path, or @abstract), then, after "--", exec the rest
 * (so the sender stays the same process: the supervisor checks the pid
 * of what it receives while that process still exists).
 *
 *   sdnotify_send [-s SOCKET] [-i MS -n COUNT] MESSAGE... [-- COMMAND...]
 *
 * A MESSAGE may hold several KEY=VALUE lines ($'READY=1\nSTATUS=up').
 * With -n, the messages are sent COUNT times (0: for ever, failed sends
 * ignored: the supervisor may be restarting), MS apart.
 * "$PPID" in a message is replaced by the parent's pid, "$SELF" by ours.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int usage(void) {
  fprintf(stderr, "usage: sdnotify_send [-s SOCKET] [-i MS -n COUNT] "
                  "MESSAGE... [-- COMMAND...]\n");
  return 2;
}

static void expand(const char *in, char *out, size_t len) {
  size_t o = 0;
  while (*in && o + 1 < len) {
    if (strncmp(in, "$SELF", 5) == 0 || strncmp(in, "$PPID", 5) == 0) {
      int pid = in[1] == 'S' ? (int)getpid() : (int)getppid();
      o += (size_t)snprintf(out + o, len - o, "%d", pid);
      in += 5;
    } else {
      out[o++] = *in++;
    }
  }
  out[o < len ? o : len - 1] = '\0';
}

int main(int argc, char **argv) {
  const char *path = getenv("NOTIFY_SOCKET");
  long every = 0, count = 1;
  int opt;
  while ((opt = getopt(argc, argv, "+s:i:n:")) != -1) {
    if (opt == 's') path = optarg;
    else if (opt == 'i') every = atol(optarg);
    else if (opt == 'n') count = atol(optarg);
    else return usage();
  }
  int first = optind, last = optind;
  while (last < argc && strcmp(argv[last], "--") != 0) last++;
  if (path == NULL || (path[0] != '/' && path[0] != '@')) {
    fprintf(stderr, "sdnotify_send: no NOTIFY_SOCKET\n");
    return 1;
  }
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t pl = strlen(path);
  if (pl >= sizeof a.sun_path) return 1;
  memcpy(a.sun_path, path, pl);
  if (path[0] == '@') a.sun_path[0] = '\0';
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pl);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 1;
  for (long n = 0; count == 0 || n < count; n++) {
    for (int i = first; i < last; i++) {
      char msg[4096];
      expand(argv[i], msg, sizeof msg);
      if (sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&a, alen) < 0 &&
          count != 0) { /* for ever: as sd_notify's callers, go on */
        fprintf(stderr, "sdnotify_send: %s: %s\n", path, strerror(errno));
        return 1;
      }
    }
    if (every > 0 && (count == 0 || n + 1 < count)) {
      struct timespec ts = {every / 1000, (every % 1000) * 1000000};
      nanosleep(&ts, NULL);
    }
  }
  close(fd);
  if (last < argc && last + 1 < argc) {
    execvp(argv[last + 1], argv + last + 1);
    fprintf(stderr, "sdnotify_send: %s: %s\n", argv[last + 1],
            strerror(errno));
    return 127;
  }
  return 0;
}
