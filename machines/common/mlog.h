/*
 * mlog.h - one log line per transition: "HH:MM:SS.mmm who  text".
 * Shared by the example machines and the supervisor.
 */
#ifndef MLY_MLOG_H
#define MLY_MLOG_H

#include <stdarg.h>
#include <stdio.h>

void mlog(FILE *out, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mlogv(FILE *out, const char *who, const char *fmt, va_list ap);
/* The same line into buf, newline included, as snprintf counts it. */
int mlog_format(char *buf, size_t len, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int mlog_vformat(char *buf, size_t len, const char *who, const char *fmt,
                 va_list ap);

#endif
