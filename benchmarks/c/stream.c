/* A STREAM of our own, laid out and timed like memprobe's Numba kernels so the two compare at
 * the same working set: one arena, arrays 4 KiB-rounded plus 4416 bytes apart (no 4K aliasing),
 * each thread repeats the kernel over its own contiguous, line-aligned chunk `times` times inside
 * one parallel region (likwid-bench style), float64, STREAM byte counting.
 *
 *   stream KERNEL SIZE_BYTES THREADS REPS TARGET_NS  ->  one "ns per pass" per line
 * KERNEL: read | write | copy | triad. Build: gcc -O3 -march=native -fopenmp stream.c -o stream
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PAD_BYTES (4096 + 320)
#define SCALAR 3.0

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static double k_read(double *restrict a, const double *restrict b, const double *restrict c, long n) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (long i = 0; i < n; i++) s += a[i];
    (void)b; (void)c;
    return s;
}
static double k_write(double *restrict a, const double *restrict b, const double *restrict c, long n) {
    for (long i = 0; i < n; i++) a[i] = SCALAR;
    (void)b; (void)c;
    return 0.0;
}
static double k_copy(double *restrict a, const double *restrict b, const double *restrict c, long n) {
    for (long i = 0; i < n; i++) a[i] = b[i];
    (void)c;
    return 0.0;
}
static double k_triad(double *restrict a, const double *restrict b, const double *restrict c, long n) {
    for (long i = 0; i < n; i++) a[i] = b[i] + SCALAR * c[i];
    return 0.0;
}

typedef double (*kernel_fn)(double *restrict, const double *restrict, const double *restrict, long);

static double run(kernel_fn k, double *a, double *b, double *c, long n, long times, int threads) {
    double total = 0.0;
    if (threads <= 1) {
        for (long r = 0; r < times; r++) total += k(a, b, c, n);
        return total;
    }
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        long lo = (n * t / nt) / 8 * 8;
        long hi = t == nt - 1 ? n : (n * (t + 1) / nt) / 8 * 8;
        double acc = 0.0;
        for (long r = 0; r < times; r++) acc += k(a + lo, b ? b + lo : b, c ? c + lo : c, hi - lo);
        total += acc;
    }
    return total;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: stream KERNEL SIZE_BYTES THREADS REPS TARGET_NS\n");
        return 2;
    }
    const char *name = argv[1];
    long size = atol(argv[2]);
    int threads = atoi(argv[3]), reps = atoi(argv[4]);
    double target = atof(argv[5]);
    kernel_fn k;
    int arrays;
    if (!strcmp(name, "read")) { k = k_read; arrays = 1; }
    else if (!strcmp(name, "write")) { k = k_write; arrays = 1; }
    else if (!strcmp(name, "copy")) { k = k_copy; arrays = 2; }
    else if (!strcmp(name, "triad")) { k = k_triad; arrays = 3; }
    else { fprintf(stderr, "unknown kernel %s\n", name); return 2; }
    long n = size / (8 * arrays);
    n -= n % 16;
    if (n < 16) n = 16;
    long stride = (n * 8 + 4095) / 4096 * 4096 + PAD_BYTES;
    size_t span = (size_t)stride * 3 + (2 << 20) * 2;
    char *raw = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(raw, span, MADV_HUGEPAGE);
    char *base = raw + ((-(unsigned long)raw) & ((2UL << 20) - 1));
    memset(base, 0, (size_t)stride * 3);
    double *a = (double *)base;
    double *b = arrays > 1 ? (double *)(base + stride) : NULL;
    double *c = arrays > 2 ? (double *)(base + 2 * stride) : NULL;
    for (long i = 0; i < n; i++) {
        a[i] = (double)(i % 1024);
        if (b) b[i] = (double)((i * 7) % 512);
        if (c) c[i] = (double)((i * 3) % 256);
    }
    run(k, a, b, c, n, 1, 1);
    long times = 1;
    double dt;
    for (;;) { /* calibrate on one thread, as the Numba probe does */
        double t0 = now_ns();
        run(k, a, b, c, n, times, 1);
        dt = now_ns() - t0;
        if (dt >= target / 4 || times >= (1L << 30)) break;
        times *= dt < target / 16 ? 4 : 2;
    }
    times = (long)(times * target / (dt > 1 ? dt : 1));
    if (times < 1) times = 1;
    if (threads > 1) run(k, a, b, c, n, 1, threads);
    double result = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        result = run(k, a, b, c, n, times, threads);
        printf("%.3f\n", (now_ns() - t0) / times);
    }
    /* verify apart from timing */
    int ok = 1;
    for (long i = 0; i < n && ok; i++) {
        double want_a = !strcmp(name, "read") ? (double)(i % 1024)
                      : !strcmp(name, "write") ? SCALAR
                      : !strcmp(name, "copy") ? b[i] : b[i] + SCALAR * c[i];
        ok = a[i] == want_a;
    }
    if (!strcmp(name, "read")) {
        double s = 0;
        for (long i = 0; i < n; i++) s += (double)(i % 1024);
        ok = ok && result == s * times;
    }
    if (!ok) { fprintf(stderr, "stream: kernel %s produced wrong values\n", name); return 1; }
    printf("n_elements %ld\n", n);
    return 0;
}
