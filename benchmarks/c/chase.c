/* Reference pointer chase for benchmarks/latency_vs_c.py: the same layout as memprobe's
 * ChaseProbe (one Sattolo cycle over slot_bytes-spaced slots in a 2 MiB-aligned
 * MADV_HUGEPAGE mapping), the same warm-up (one lap, capped at 1M hops), repetitions that go on
 * where the last one stopped, and a hop that is a plain `p = *p`.
 * usage: chase SIZE_BYTES SLOT_BYTES HOPS REPS SEED   -> prints ns/hop per repetition */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t rng_state;
static uint64_t next_rand(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *__attribute__((noinline)) chase(void *p, uint64_t hops) {
    void **q = (void **)p;
    for (uint64_t i = 0; i < hops; i += 8) {
        q = (void **)*q; q = (void **)*q; q = (void **)*q; q = (void **)*q;
        q = (void **)*q; q = (void **)*q; q = (void **)*q; q = (void **)*q;
    }
    return q;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: chase SIZE SLOT HOPS REPS SEED\n"); return 2; }
    uint64_t size = strtoull(argv[1], 0, 10), slot = strtoull(argv[2], 0, 10);
    uint64_t hops = strtoull(argv[3], 0, 10) / 8 * 8;
    int reps = atoi(argv[4]);
    rng_state = strtoull(argv[5], 0, 10);
    uint64_t n = size / slot, huge = 2u << 20;
    uint64_t span = (size + huge - 1) / huge * huge + huge;
    char *m = mmap(0, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(m, span, MADV_HUGEPAGE);
    char *base = m + ((huge - ((uintptr_t)m % huge)) % huge);
    uint64_t *perm = malloc(n * sizeof *perm);
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n - 1; i > 0; i--) { /* Sattolo: j < i */
        uint64_t j = next_rand() % i, t = perm[i];
        perm[i] = perm[j]; perm[j] = t;
    }
    for (uint64_t k = 0; k < n; k++) *(void **)(base + k * slot) = base + perm[k] * slot;
    free(perm);
    void *p = chase(base, ((n < (1u << 20) ? n : (1u << 20)) + 7) / 8 * 8);
    for (int r = 0; r < reps; r++) {
        double t0 = now_ns();
        p = chase(p, hops);
        printf("%.4f\n", (now_ns() - t0) / hops);
    }
    return p == 0; /* keeps the chase alive */
}
