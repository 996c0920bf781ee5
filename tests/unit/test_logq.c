/*
 * test_logq.c: the log rings and their writer, against a pipe whose reader
 * the test controls. The pipe is filled first, so the writer blocks on it and
 * the ring fills as it would behind a stalled log reader.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/logq.h"

#define PIPE_CAP 4096

/* A pipe of PIPE_CAP bytes, full of 'x'. The write end is left blocking. */
static void full_pipe(int fds[2])
{
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(fcntl(fds[1], F_SETPIPE_SZ, PIPE_CAP), PIPE_CAP);
    cr_assert_eq(fcntl(fds[1], F_SETFL, O_NONBLOCK), 0);
    char x[PIPE_CAP];
    memset(x, 'x', sizeof(x));
    size_t filled = 0;
    for (ssize_t n; (n = write(fds[1], x, sizeof(x))) > 0;)
        filled += (size_t)n;
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(filled, PIPE_CAP);
    cr_assert_eq(fcntl(fds[1], F_SETFL, 0), 0);
}

/* Reads exactly n bytes from fd within 5 s. */
static void read_all(int fd, char *out, size_t n)
{
    size_t got = 0;
    time_t until = time(NULL) + 5;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        cr_assert(time(NULL) <= until, "only %zu of %zu bytes arrived", got, n);
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = read(fd, out + got, n - got);
        cr_assert_gt(k, 0);
        got += (size_t)k;
    }
}

Test(logq, full_ring_drops_whole_lines_and_keeps_order)
{
    int fds[2];
    full_pipe(fds);
    cr_assert_eq(sy_logq_open(fds[1]), 0);
    struct sy_logq_ring *r = sy_logq_ring_new(fds[1], 32);
    cr_assert_not_null(r);

    cr_assert_eq(sy_logq_put(r, "0123456789\n", 11), 0);
    /* 21 bytes left: the first line fits, the second would fit only in part. */
    cr_assert_eq(sy_logq_put(r, "abcdefghij\nABCDEFGHIJ\nzz\n", 25), 2);
    /* 10 bytes left: a line of 11 is dropped whole. */
    cr_assert_eq(sy_logq_put(r, "klmnopqrst\n", 11), 1);
    cr_assert_eq(sy_logq_dropped(fds[1]), 3);
    sy_logq_drop(r, 4);
    cr_assert_eq(sy_logq_dropped(fds[1]), 7);

    /* The reader resumes: the pipe's old content, then the queued lines, then new ones. */
    char buf[PIPE_CAP + 64];
    read_all(fds[0], buf, PIPE_CAP + 22);
    cr_assert_eq(memcmp(buf + PIPE_CAP, "0123456789\nabcdefghij\n", 22), 0);
    cr_assert_eq(sy_logq_flush(5000), 0);
    cr_assert_eq(sy_logq_put(r, "uvwxyz\n", 7), 0);
    read_all(fds[0], buf, 7);
    cr_assert_eq(memcmp(buf, "uvwxyz\n", 7), 0);
}

Test(logq, lines_wrap_around_the_ring)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(sy_logq_open(fds[1]), 0);
    struct sy_logq_ring *r = sy_logq_ring_new(fds[1], 16);
    char line[16], buf[8];
    for (int i = 0; i < 100; i++) {
        snprintf(line, sizeof(line), "l%04d\n", i);
        cr_assert_eq(sy_logq_put(r, line, 6), 0);
        read_all(fds[0], buf, 6);
        cr_assert_eq(memcmp(buf, line, 6), 0, "line %d", i);
    }
    cr_assert_eq(sy_logq_dropped(fds[1]), 0);
}

/* A writer blocked on a nearly full pipe must not leave half a line in it. The pipe has two
 * pages; the first is full: a plain write of all the lines would fill the second page and
 * stop in the middle of a line. */
Test(logq, a_pipe_never_holds_half_a_line)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    cr_assert_eq(fcntl(fds[1], F_SETPIPE_SZ, 2 * PIPE_CAP), 2 * PIPE_CAP);
    char x[PIPE_CAP];
    memset(x, 'x', sizeof(x));
    cr_assert_eq(write(fds[1], x, sizeof(x)), (ssize_t)sizeof(x));
    cr_assert_eq(sy_logq_open(fds[1]), 0);
    struct sy_logq_ring *r = sy_logq_ring_new(fds[1], 16384);
    char lines[100 * 80];
    for (int i = 0; i < 100; i++) {
        memset(lines + i * 80, 'a' + i % 26, 79);
        lines[i * 80 + 79] = '\n';
    }
    cr_assert_eq(sy_logq_put(r, lines, sizeof(lines)), 0);
    usleep(300 * 1000); /* the writer waits on the pipe */

    static char got[sizeof(x) + sizeof(lines)];
    size_t n = 0;
    cr_assert_eq(fcntl(fds[0], F_SETFL, O_NONBLOCK), 0);
    for (ssize_t k; (k = read(fds[0], got + n, sizeof(got) - n)) > 0;)
        n += (size_t)k;
    cr_assert_geq(n, sizeof(x));
    cr_assert(n == sizeof(x) || got[n - 1] == '\n', "the pipe held half a line (%zu bytes)", n);
    cr_assert_eq(fcntl(fds[0], F_SETFL, 0), 0);
    read_all(fds[0], got + n, sizeof(got) - n);
    cr_assert_eq(memcmp(got + sizeof(x), lines, sizeof(lines)), 0);
}

Test(logq, flush_gives_up_on_a_stalled_reader)
{
    int fds[2];
    full_pipe(fds);
    cr_assert_eq(sy_logq_open(fds[1]), 0);
    struct sy_logq_ring *r = sy_logq_ring_new(fds[1], 64);
    cr_assert_eq(sy_logq_put(r, "stuck\n", 6), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(sy_logq_flush(200), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(s >= 0.19 && s < 30, "flush returned after %.3f s", s);
}

Test(logq, no_ring_without_a_writer)
{
    cr_assert_not(sy_logq_running(12345));
    cr_assert_null(sy_logq_ring_new(12345, 64));
}
