/* Per-thread scratch and the thread pool the kernels share their work on (included by
 * _common.h). */
#ifndef QCC_THREAD_POOL_H
#define QCC_THREAD_POOL_H

/* ---- per-thread scratch ------------------------------------------------------ */

static pthread_key_t qcc_buf_keys[3];
static pthread_once_t qcc_buf_once = PTHREAD_ONCE_INIT;

static void qcc_buf_free(void *p) { free(p); }
static void qcc_buf_key_init(void)
{
    pthread_key_create(&qcc_buf_keys[0], qcc_buf_free);
    pthread_key_create(&qcc_buf_keys[1], qcc_buf_free);
    pthread_key_create(&qcc_buf_keys[2], qcc_buf_free);
}

/* A 64-byte aligned scratch area of at least `bytes`, owned by the calling thread
 * (grown on demand, freed when the thread ends); NULL when out of memory. Slot 0 is
 * the kernels' general scratch, slot 1 a second area that stays valid while slot 0
 * is used (a GEMM's weights packed at run time, _gemm_impl.h), slot 2 a third one
 * that stays valid while a GEMM runs (an image's padded input, _conv_impl.h). */
static void *qcc_thread_buffer_slot(int slot, size_t bytes)
{
    char *base;
    pthread_once(&qcc_buf_once, qcc_buf_key_init);
    base = (char *)pthread_getspecific(qcc_buf_keys[slot]);
    if (base == NULL || *(size_t *)base < bytes) {
        void *fresh = NULL;
        size_t cap = bytes + bytes / 4 + 4096;
        if (posix_memalign(&fresh, 64, cap + 64) != 0) return NULL;
        free(base);
        base = (char *)fresh;
        *(size_t *)base = cap;
        pthread_setspecific(qcc_buf_keys[slot], base);
    }
    return base + 64;
}

static void *qcc_thread_buffer(size_t bytes) { return qcc_thread_buffer_slot(0, bytes); }

/* ---- thread pool --------------------------------------------------------------
 * A job is fn(arg) run by the calling thread and by up to n - 1 workers that join it
 * while it is open; fn hands out its work itself (tasks taken from a shared counter),
 * so the caller never waits for a worker that has not started: once the caller's
 * fn returns, the job is closed and only workers already in it are waited for (a
 * worker kept off its core by other processes simply misses the job).
 *
 * A worker that finishes a job spins on the job counter for QCC_SPIN_US
 * microseconds (default 200; 0: never) before it sleeps on the condition variable:
 * between the ops of a graph the caller spends a few microseconds in Python, far
 * less than a futex wake-up takes, so without the spin the worker would reach the
 * short kernels of a small model too late to take part in them.
 *
 * One pool serves the whole runtime: every compiled module binds its qcc_parallel
 * to the pool of qcc.runtime._kernels (the capsule `_pool_capsule`, bound at import
 * with qcc_pool_bind), so there is one set of workers, not one per module.
 *
 * Each thread of a job has an index, qcc_pool_tid(): 0 for the caller, k for worker
 * k (the home claims below hand out work by it). */

typedef void (*qcc_task_fn)(void *arg);
typedef void (*qcc_parallel_fn)(qcc_task_fn fn, void *arg, int width);

#define QCC_MAX_THREADS 64
#define QCC_POOL_CAPSULE "qcc.runtime.pool"
static pthread_mutex_t qcc_pool_run = PTHREAD_MUTEX_INITIALIZER;  /* one job at a time */
static pthread_mutex_t qcc_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcc_pool_go = PTHREAD_COND_INITIALIZER;
static int qcc_pool_workers;          /* running workers, ids 1..qcc_pool_workers */
static unsigned long qcc_pool_gen;    /* job counter (atomic) */
static unsigned long qcc_pool_seen0[QCC_MAX_THREADS];
static qcc_task_fn qcc_pool_fn;
static void *qcc_pool_arg;
static fenv_t qcc_pool_env;           /* the caller's floating-point environment */
static int qcc_pool_open, qcc_pool_width, qcc_pool_active, qcc_pool_sleepers;  /* atomic */
static int qcc_pool_forkable;
static long qcc_pool_spin_ns = -1;    /* from QCC_SPIN_US on the first job */
static __thread int qcc_pool_tid_own;  /* this thread's index in this module's pool */

/* What a module binds to: the runtime's pool and its threads' indexes. */
typedef struct {
    qcc_parallel_fn job;
    int (*tid)(void);
} qcc_pool_api;
static const qcc_pool_api *qcc_pool_shared;  /* the runtime's pool, when bound */

static void qcc_pool_child(void)
{
    /* Only the forking thread exists in the child: start over. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    qcc_pool_run = m;
    qcc_pool_mu = m;
    qcc_pool_go = c;
    qcc_pool_workers = 0;
    qcc_pool_open = 0;
    qcc_pool_active = 0;
    qcc_pool_sleepers = 0;
}

static inline void qcc_cpu_relax(void)
{
#if QCC_X86
    _mm_pause();
#endif
}

static long qcc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* The next job after `seen`: spin for qcc_pool_spin_ns, then sleep. */
static unsigned long qcc_pool_next(unsigned long seen)
{
    unsigned long gen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST);
    if (gen == seen && qcc_pool_spin_ns > 0) {
        const long until = qcc_now_ns() + qcc_pool_spin_ns;
        int i = 0;
        while ((gen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST)) == seen) {
            qcc_cpu_relax();
            if (++i == 64) {
                i = 0;
                if (qcc_now_ns() > until) break;
            }
        }
    }
    if (gen != seen) return gen;
    pthread_mutex_lock(&qcc_pool_mu);
    __atomic_add_fetch(&qcc_pool_sleepers, 1, __ATOMIC_SEQ_CST);
    while ((gen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST)) == seen)
        pthread_cond_wait(&qcc_pool_go, &qcc_pool_mu);
    __atomic_sub_fetch(&qcc_pool_sleepers, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&qcc_pool_mu);
    return gen;
}

static void *qcc_pool_main(void *arg)
{
    const int id = (int)(intptr_t)arg;
    unsigned long seen = qcc_pool_seen0[id];
    qcc_pool_tid_own = id;
    for (;;) {
        qcc_task_fn fn;
        void *farg;
        fenv_t own, env;
        seen = qcc_pool_next(seen);
        /* Join: announce, then look whether the job is still open (the caller closes
         * it, then waits for the announced: one of the two sees the other). The job
         * read is the one open now, which may be later than `seen`; it stays valid
         * until this worker leaves. */
        __atomic_add_fetch(&qcc_pool_active, 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&qcc_pool_open, __ATOMIC_SEQ_CST)
            && id < __atomic_load_n(&qcc_pool_width, __ATOMIC_SEQ_CST)) {
            seen = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST);
            fn = qcc_pool_fn;
            farg = qcc_pool_arg;
            env = qcc_pool_env;
            fegetenv(&own);
            fesetenv(&env);
            fn(farg);
            fesetenv(&own);
        }
        __atomic_sub_fetch(&qcc_pool_active, 1, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* fn(arg) on the calling thread and up to `width` - 1 workers of this module's own
 * pool; just the caller when width <= 1 or when another thread's job is running. */
static void qcc_pool_job(qcc_task_fn fn, void *arg, int width)
{
    int i = 0;
    if (width <= 1 || pthread_mutex_trylock(&qcc_pool_run) != 0) {
        fn(arg);
        return;
    }
    if (qcc_pool_spin_ns < 0) {
        const char *v = getenv("QCC_SPIN_US");
        long us = v && *v ? strtol(v, NULL, 10) : 200;
        qcc_pool_spin_ns = (us < 0 ? 0 : us > 1000000 ? 1000000 : us) * 1000L;
    }
    if (!qcc_pool_forkable) {
        pthread_atfork(NULL, NULL, qcc_pool_child);
        qcc_pool_forkable = 1;
    }
    while (qcc_pool_workers < width - 1 && qcc_pool_workers < QCC_MAX_THREADS - 1) {
        pthread_t th;
        pthread_attr_t attr;
        const int id = qcc_pool_workers + 1;
        int err;
        qcc_pool_seen0[id] = __atomic_load_n(&qcc_pool_gen, __ATOMIC_SEQ_CST);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        err = pthread_create(&th, &attr, qcc_pool_main, (void *)(intptr_t)id);
        pthread_attr_destroy(&attr);
        if (err) break;
        qcc_pool_workers = id;
    }
    qcc_pool_fn = fn;
    qcc_pool_arg = arg;
    fegetenv(&qcc_pool_env);
    __atomic_store_n(&qcc_pool_width, width, __ATOMIC_SEQ_CST);
    __atomic_store_n(&qcc_pool_open, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&qcc_pool_gen, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&qcc_pool_sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&qcc_pool_mu);
        pthread_cond_broadcast(&qcc_pool_go);
        pthread_mutex_unlock(&qcc_pool_mu);
    }
    fn(arg);
    __atomic_store_n(&qcc_pool_open, 0, __ATOMIC_SEQ_CST);
    /* Workers still in the job are finishing their last task. */
    while (__atomic_load_n(&qcc_pool_active, __ATOMIC_SEQ_CST) > 0) {
        qcc_cpu_relax();
        if (++i == 1024) {
            i = 0;
            sched_yield();
        }
    }
    pthread_mutex_unlock(&qcc_pool_run);
}

/* A claim of the next units of a job of `blocks` blocks of `units` units each,
 * handed out block by block to `width` threads through the counter *next: a share
 * of what is left (remaining / (2 * width), 1 to `cap` units, within one block), so
 * claims start big and end single and the threads finish together whenever one
 * joined the job late (with fixed tasks, the caller waited 51 us on average at the
 * end of each of ResNet-50's convs for the worker's last task: 2 threads, AMD Zen
 * 4). Sets *b and *u0 to the block and its first unit and returns how many units
 * (0: none left). */
static inline int qcc_claim(int *next, int blocks, int units, int width, int cap, int *b, int *u0)
{
    const int total = blocks * units;
    int at = __atomic_load_n(next, __ATOMIC_RELAXED), n;
    do {
        if (at >= total) return 0;
        n = (total - at) / (2 * width);
        n = n < 1 ? 1 : n > cap ? cap : n;
        if (n > units - at % units) n = units - at % units;
    } while (!__atomic_compare_exchange_n(next, &at, at + n, 0, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
    *b = at / units;
    *u0 = at % units;
    return n;
}

static int qcc_pool_tid_get(void) { return qcc_pool_tid_own; }
static const qcc_pool_api qcc_pool_self = {qcc_pool_job, qcc_pool_tid_get};

/* This module's pool, for the capsule the others bind to. */
static void *qcc_pool_api_of(void) { return (void *)&qcc_pool_self; }

/* Bind this module's qcc_parallel to the pool `p` (another module's qcc_pool_api,
 * from its capsule); NULL: back to this module's own pool. */
static void qcc_pool_bind(void *p)
{
    qcc_pool_shared = (const qcc_pool_api *)p;
}

/* The calling thread's index in the job it runs (0: the caller, or no job). */
static inline int qcc_pool_tid(void)
{
    return qcc_pool_shared != NULL ? qcc_pool_shared->tid() : qcc_pool_tid_own;
}

/* ---- home claims ---------------------------------------------------------------
 * A job of `blocks` blocks of `units` units each (a conv's output channel groups of
 * tiles of positions, a blocked tensor's planes of bands of rows), `width` threads.
 * Its units in order (block after block) are cut into `homes` contiguous runs, one a
 * thread (QCC_HOMES at most; thread t takes home t % homes): a thread claims its
 * home's units from the front, then takes over what is left of the others' from
 * their back.
 *
 * The units' order is the order of the data in memory (a blocked tensor's channel
 * blocks, each a plane of rows), so a thread writes one contiguous part of an op's
 * output, the same part in every op of the same shape, and reads back mostly what it
 * wrote in the op before, from its own core's cache. A shared counter instead dealt
 * the units out in turns: the two cores wrote alternate runs of a plane, each core's
 * prefetchers ran into the other's runs, and lines crossed between the cores at each
 * op. Scaling a [30 x 14 x 14 x 16] blocked plane set on 2 threads (C, 20000 jobs):
 * 10.3 us a job with runs of half a plane a thread (as busy as 1 thread alone),
 * 6.9 us with each thread's half in one run. In the model (in-process A/B, steps
 * summed): MobileNetV3-large 4.44 -> 4.25 ms, light_resnet50 41.6 -> 40.5 ms.
 *
 * A claim takes half of what is left in the home (at least 1, at most `cap`, within
 * one block): long runs first, single units at the end, so that a thread that
 * finishes early takes over the other's last units. Sets *b and *u0 to the block
 * and first unit and returns how many units (0: none left). */
#define QCC_HOMES 8
typedef struct {
    /* units taken from the front (low 32 bits) and from the back (high 32 bits) */
    unsigned long long taken;   /* a cache line each, its own */
} __attribute__((aligned(64))) qcc_home;
typedef struct {
    qcc_home h[QCC_HOMES];      /* zero at the start of the job */
} qcc_homes;

static inline int qcc_claim_home_as(qcc_homes *hs, int tid, int blocks, int units, int width,
                                    int cap, int *b, int *u0)
{
    const long total = (long)blocks * units;
    const int homes = width < 1 ? 1 : width < QCC_HOMES ? width : QCC_HOMES;
    const int own = tid % homes;
    int k, t = own;
    for (k = 0; k < homes; k++, t = t + 1 < homes ? t + 1 : 0) {
        const long lo = total * t / homes, hi = total * (t + 1) / homes;
        unsigned long long seen = __atomic_load_n(&hs->h[t].taken, __ATOMIC_RELAXED);
        for (;;) {
            const long front = (long)(seen & 0xffffffffULL), back = (long)(seen >> 32);
            const long left = hi - lo - front - back;
            long first, n = (left + 1) / 2;
            unsigned long long next;
            if (left <= 0) break;
            n = n > cap ? cap : n;
            if (t == own) {   /* from the front, within the block of the first unit */
                first = lo + front;
                if (n > units - first % units) n = units - first % units;
                next = seen + (unsigned long long)n;
            } else {          /* from the back, within the block of the last unit */
                const long last = hi - back - 1;
                if (n > last % units + 1) n = last % units + 1;
                first = last - n + 1;
                next = seen + ((unsigned long long)n << 32);
            }
            if (__atomic_compare_exchange_n(&hs->h[t].taken, &seen, next, 0, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED)) {
                *b = (int)(first / units);
                *u0 = (int)(first % units);
                return (int)n;
            }
        }
    }
    return 0;
}

static inline int qcc_claim_home(qcc_homes *hs, int blocks, int units, int width, int cap,
                                 int *b, int *u0)
{
    return qcc_claim_home_as(hs, qcc_pool_tid(), blocks, units, width, cap, b, u0);
}

/* fn(arg) on the calling thread and up to `width` - 1 workers of the runtime's pool
 * (this module's own until qcc_pool_bind is called). */
static void qcc_parallel(qcc_task_fn fn, void *arg, int width)
{
    if (width <= 1) {
        fn(arg);
        return;
    }
    if (qcc_pool_shared != NULL)
        qcc_pool_shared->job(fn, arg, width);
    else
        qcc_pool_job(fn, arg, width);
}

#endif
