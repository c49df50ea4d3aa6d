/*
 * outq.h - a process's own output (stdout, stderr) that never stalls it.
 *
 * A long-running command writes log lines and, for the supervisor, what
 * its programs write with `stdout: inherit`.  If whoever reads that
 * output stops reading (a stopped pager, a FIFO whose reader hangs, a
 * terminal on hold), a blocking write would stop the whole event loop:
 * no signal acted on, no control request answered, no other log written.
 *
 * An outq writes without blocking, through a file description of its own
 * (reopened through /proc/self/fd, so O_NONBLOCK does not leak to the
 * shell sharing the terminal or pipe).  What cannot be written at once
 * waits in a bounded buffer (OUTQ_CAP bytes) and goes out when the fd
 * turns writable; a line that does not fit is dropped whole and counted,
 * and once the buffer has drained a line says how many were dropped.  A
 * reader that is gone for good (EPIPE) makes every later line a drop.
 * Regular files and /dev/null are written directly.
 */
#ifndef MLY_OUTQ_H
#define MLY_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#define OUTQ_CAP (256u * 1024u)

typedef struct outq outq;

/* Takes over writing to fd (1 or 2; fd itself stays open).  NULL when out
 * of memory.  Until outq_attach, what cannot be written waits. */
outq *outq_open(int fd);
/* The loop whose poll handle watches for writability. */
int outq_attach(outq *q, uv_loop_t *loop);
/* Whether the output is a terminal (shown text should then be escaped). */
bool outq_tty(const outq *q);
/* Writes n bytes (a whole line with its newline), or drops them. */
void outq_write(outq *q, const char *p, size_t n);
/* One line: prefix, then body (escaped when the output is a terminal and
 * escape_tty is set), then a newline. */
void outq_line(outq *q, const char *prefix, size_t plen, const char *body,
               size_t blen, bool escape_tty);
/* A stdio stream onto q (fopencookie), line-buffered, for code that
 * writes to a FILE *: each flushed chunk is an outq_write.  Close it with
 * fclose before outq_close.  Loop thread only, like q. */
FILE *outq_fopen(outq *q);
/* Lines dropped so far. */
uint64_t outq_dropped(const outq *q);
/* A last write without waiting, then frees it (after the loop closes the
 * handle, when attached: run the loop once more).  What the reader does
 * not take at once is dropped; the last line may then be cut.  The poll
 * handle does not keep a loop alive: lines go out while something else
 * (the runtime) runs it. */
void outq_close(outq *q);

#endif
