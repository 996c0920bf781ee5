/*
 * logq.h: log output that never blocks the thread producing it.
 *
 * stdout (access log) and stderr (error log) are descriptors the process
 * inherits: usually pipes to a container runtime, whose reader may pause.
 * A write(2) on a full pipe blocks, so no worker writes to them. A producer
 * thread owns a bounded ring of whole lines; one writer thread per output
 * (stdout and stderr, or a single one when both name the same pipe or file)
 * empties the rings with ordinary blocking writes. When a ring is full, the
 * lines that do not fit are dropped whole and counted, so the output stays
 * a sequence of complete lines.
 */
#ifndef SY_CORE_LOGQ_H
#define SY_CORE_LOGQ_H

#include <stddef.h>
#include <stdint.h>

struct sy_logq_ring;

/* Starts the writer threads for fds 1 and 2. Main thread, once, after the
 * signal mask is set (the writers inherit it). Returns 0, or -1 when a thread
 * cannot be created. Before this, nothing is queued: callers write directly. */
int sy_logq_start(void);

/* Starts a writer for one more descriptor (tests use a pipe). Returns 0 or -1. */
int sy_logq_open(int fd);

/* 1 once the writer for fd runs. */
int sy_logq_running(int fd);

/* A new ring of cap bytes feeding fd's writer, for one producer thread. Lives
 * as long as the process (the writer may still read it). NULL when fd has no
 * writer. Any thread; takes a lock (not for the request path). */
struct sy_logq_ring *sy_logq_ring_new(int fd, size_t cap);

/* Appends the first whole lines of p[0..n) that fit, wakes the writer, and
 * drops (and counts) the lines that do not fit. A trailing piece without a
 * newline counts as a line. Producer thread only; never blocks. Returns the
 * number of lines dropped. */
size_t sy_logq_put(struct sy_logq_ring *r, const char *p, size_t n);

/* Counts n lines dropped before they reached the ring. Producer thread only. */
void sy_logq_drop(struct sy_logq_ring *r, uint64_t n);

/* Lines dropped so far by every ring of fd. Any thread (relaxed reads). */
uint64_t sy_logq_dropped(int fd);

/* Waits until the writers emptied every ring, at most timeout_ms. Returns 0
 * when everything was written, -1 on timeout (a reader that does not read). */
int sy_logq_flush(unsigned timeout_ms);

#endif
