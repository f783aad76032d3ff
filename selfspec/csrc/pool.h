/* A thread pool whose caller never waits for a helper that has not started.
 *
 * A decoding step runs a few hundred small parallel loops (each product, each attention
 * pass). With OpenMP every loop ends at a barrier that waits for every thread of the team;
 * on a machine where another process holds the other core, a helper that is not scheduled
 * stalls each barrier for a scheduler tick (docs/engine.md, Threads, has the figures).
 * Here a loop's items are claimed one at a time from a shared counter, by the caller and
 * by whichever helpers are awake; the caller waits only for items a helper has already
 * claimed (a helper that is running). Late helpers find nothing left and go back to
 * waiting. Which thread computes an item never changes its result: items are whole
 * output rows, and threads never share a sum.
 *
 * Helpers spin briefly for the next loop (a step's loops follow each other within
 * microseconds), then sleep on a futex. One caller at a time uses the pool; a second,
 * concurrent caller (two requests decoding at once) runs its loop on its own thread.
 */
#ifndef SELFSPEC_POOL_H
#define SELFSPEC_POOL_H

#include <immintrin.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef void (*ss_task_fn)(void* ctx, long item);

#define SS_POOL_MAX_HELPERS 63
#define SS_POOL_SPIN (1 << 15) /* pause instructions before a helper sleeps (about a millisecond) */
#define SS__BITS 20            /* the work word: generation | item count | next item */
#define SS__MASK ((1ULL << SS__BITS) - 1)

static struct {
    _Atomic uint64_t work;
    _Atomic long done;
    _Atomic(ss_task_fn) fn;
    _Atomic(void*) ctx;
    _Atomic uint32_t wake;     /* futex word: bumped for every loop */
    _Atomic int sleepers;
    _Atomic int active;        /* helpers asked to take part (threads - 1) */
    int started;
    uint64_t generation;
    pthread_mutex_t busy, grow;
} ss__pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .grow = PTHREAD_MUTEX_INITIALIZER};

/* Claim and run items of the current loop until none is left. */
static void ss__pool_work(void) {
    for (;;) {
        uint64_t v = atomic_load_explicit(&ss__pool.work, memory_order_acquire);
        if ((v & SS__MASK) >= ((v >> SS__BITS) & SS__MASK)) return;
        if (!atomic_compare_exchange_weak_explicit(&ss__pool.work, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* The loop cannot finish before this item does, so fn and ctx are still its own. */
        ss_task_fn fn = atomic_load_explicit(&ss__pool.fn, memory_order_relaxed);
        fn(atomic_load_explicit(&ss__pool.ctx, memory_order_relaxed), (long)(v & SS__MASK));
        atomic_fetch_add_explicit(&ss__pool.done, 1, memory_order_release);
    }
}

static void* ss__pool_helper(void* arg) {
    const int index = (int)(intptr_t)arg;
    uint32_t seen = atomic_load(&ss__pool.wake);
    for (;;) {
        for (int spins = 0; atomic_load_explicit(&ss__pool.wake, memory_order_acquire) == seen;) {
            if (++spins < SS_POOL_SPIN) {
                _mm_pause();
                continue;
            }
            atomic_fetch_add(&ss__pool.sleepers, 1);
            syscall(SYS_futex, &ss__pool.wake, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
            atomic_fetch_sub(&ss__pool.sleepers, 1);
            spins = 0;
        }
        seen = atomic_load_explicit(&ss__pool.wake, memory_order_acquire);
        if (index < atomic_load_explicit(&ss__pool.active, memory_order_relaxed)) ss__pool_work();
    }
    return 0;
}

/* Start helpers up to `helpers` (they live for the process). */
static void ss__pool_grow(int helpers) {
    if (helpers > SS_POOL_MAX_HELPERS) helpers = SS_POOL_MAX_HELPERS;
    pthread_mutex_lock(&ss__pool.grow);
    while (ss__pool.started < helpers) {
        pthread_t t;
        if (pthread_create(&t, 0, ss__pool_helper, (void*)(intptr_t)ss__pool.started)) break;
        pthread_detach(t);
        ss__pool.started++;
    }
    pthread_mutex_unlock(&ss__pool.grow);
}

/* fn(ctx, i) for i = 0..n-1, on up to `threads` threads (the caller's included). */
static void ss_parallel(long n, ss_task_fn fn, void* ctx, int threads) {
    if (threads <= 1 || n <= 1 || (uint64_t)n > SS__MASK || pthread_mutex_trylock(&ss__pool.busy)) {
        for (long i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    ss__pool_grow(threads - 1);
    atomic_store_explicit(&ss__pool.active, threads - 1, memory_order_relaxed);
    atomic_store_explicit(&ss__pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&ss__pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&ss__pool.done, 0, memory_order_relaxed);
    ss__pool.generation = (ss__pool.generation + 1) & SS__MASK;
    atomic_store_explicit(&ss__pool.work,
                          ss__pool.generation << (2 * SS__BITS) | (uint64_t)n << SS__BITS,
                          memory_order_release);
    atomic_fetch_add_explicit(&ss__pool.wake, 1, memory_order_release);
    if (atomic_load(&ss__pool.sleepers))
        syscall(SYS_futex, &ss__pool.wake, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    ss__pool_work();
    while (atomic_load_explicit(&ss__pool.done, memory_order_acquire) < n) _mm_pause();
    pthread_mutex_unlock(&ss__pool.busy);
}

#endif /* SELFSPEC_POOL_H */
