#define _GNU_SOURCE
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* How long an idle worker keeps polling before it sleeps on the condvar:
 * long enough to bridge one op to the next inside a partition. With the
 * builtin float ops fused, the gaps between partitions are the runtime's
 * convolutions (a millisecond or more), and a worker spinning through them
 * only takes a core from XNNPACK: 20 us measured faster than 200 us on the
 * paper model (ai-edge-litert, 2 threads, interleaved, loaded machine). */
#define SPIN_NANOSECONDS 20000L

typedef struct {
  void* ptr;
  size_t bytes;
} scratch_area;

/* The job being run is one 64-bit word: generation (24 bits), then the
 * unclaimed tasks [front, back) (20 bits each). Claiming a task is one CAS on
 * it, so a worker that wakes late (the OS may not schedule it for a while on
 * a busy machine) can never take a task of a job other than the one it read.
 * Even thread ids take tasks from the front, odd ones from the back: with two
 * threads each works through its own half of the rows, as in the op before
 * and the op after, so the rows one op writes are mostly read next by the
 * same core, from its own cache (on the 2-vCPU development VM, in the state
 * where moving data between its vCPUs is slow, the paper model took 8.5 ms
 * with one shared front and 7.7 ms with this; edge/native/README.md).
 * The caller works through the tasks itself and waits only for tasks already
 * claimed, never for a worker to wake up. */
#define FIELD_BITS 20
#define FIELD_MASK ((1ull << FIELD_BITS) - 1)
#define MAX_TASKS ((int)FIELD_MASK)

struct thread_pool {
  int num_threads;
  pthread_t* threads;
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  _Atomic uint64_t ticket;
  atomic_int done;
  int sleeping; /* guarded by mutex */
  int stop;     /* guarded by mutex */
  uint64_t generation;
  pool_task_fn fn;
  void* arg;
  scratch_area* scratch;
};

typedef struct {
  thread_pool* pool;
  int thread_id;
} worker_start;

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int has_work(uint64_t ticket) {
  return (ticket & FIELD_MASK) < ((ticket >> FIELD_BITS) & FIELD_MASK);
}

static int claim(thread_pool* pool, int from_back, int* task) {
  uint64_t t = atomic_load_explicit(&pool->ticket, memory_order_acquire);
  while (has_work(t)) {
    const uint64_t next = from_back ? t - (1ull << FIELD_BITS) : t + 1;
    if (atomic_compare_exchange_weak_explicit(&pool->ticket, &t, next, memory_order_acq_rel,
                                              memory_order_acquire)) {
      *task = from_back ? (int)((t >> FIELD_BITS) & FIELD_MASK) - 1 : (int)(t & FIELD_MASK);
      return 1;
    }
  }
  return 0;
}

static void drain(thread_pool* pool, int thread_id) {
  int task;
  while (claim(pool, thread_id & 1, &task)) {
    /* fn and arg are those of the claimed job: it cannot finish, and so
     * cannot be replaced, before this task is counted done. */
    pool->fn(pool->arg, task, thread_id);
    atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
  }
}

static void* worker_main(void* p) {
  worker_start start = *(worker_start*)p;
  free(p);
  thread_pool* pool = start.pool;
  for (;;) {
    drain(pool, start.thread_id);
    /* Poll for a while (ops come back to back), then sleep. */
    const long long deadline = now_ns() + SPIN_NANOSECONDS;
    int spins = 0;
    while (!has_work(atomic_load_explicit(&pool->ticket, memory_order_acquire))) {
      CPU_RELAX();
      if (++spins % 64 == 0 && now_ns() > deadline) break;
    }
    if (has_work(atomic_load(&pool->ticket))) continue;
    pthread_mutex_lock(&pool->mutex);
    pool->sleeping++;
    while (!pool->stop && !has_work(atomic_load(&pool->ticket))) {
      pthread_cond_wait(&pool->wake, &pool->mutex);
    }
    pool->sleeping--;
    const int stop = pool->stop;
    pthread_mutex_unlock(&pool->mutex);
    if (stop) break;
  }
  return NULL;
}

thread_pool* pool_create(int num_threads) {
  if (num_threads < 1) num_threads = 1;
  thread_pool* pool = calloc(1, sizeof(*pool));
  if (!pool) return NULL;
  pool->num_threads = num_threads;
  pool->scratch = calloc((size_t)num_threads, sizeof(scratch_area));
  pool->threads = calloc((size_t)num_threads, sizeof(pthread_t));
  if (!pool->scratch || !pool->threads) {
    free(pool->scratch);
    free(pool->threads);
    free(pool);
    return NULL;
  }
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  atomic_init(&pool->ticket, 0u);
  atomic_init(&pool->done, 0);
  for (int i = 1; i < num_threads; ++i) {
    worker_start* start = malloc(sizeof(*start));
    if (!start) {
      pool->num_threads = i;
      break;
    }
    start->pool = pool;
    start->thread_id = i;
    if (pthread_create(&pool->threads[i], NULL, worker_main, start) != 0) {
      free(start);
      pool->num_threads = i;
      break;
    }
  }
  return pool;
}

void pool_destroy(thread_pool* pool) {
  if (!pool) return;
  pthread_mutex_lock(&pool->mutex);
  pool->stop = 1;
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  for (int i = 1; i < pool->num_threads; ++i) pthread_join(pool->threads[i], NULL);
  for (int i = 0; i < pool->num_threads; ++i) free(pool->scratch[i].ptr);
  pthread_mutex_destroy(&pool->mutex);
  pthread_cond_destroy(&pool->wake);
  free(pool->scratch);
  free(pool->threads);
  free(pool);
}

int pool_size(const thread_pool* pool) { return pool ? pool->num_threads : 1; }

void pool_run(thread_pool* pool, int num_tasks, pool_task_fn fn, void* arg) {
  if (num_tasks <= 0) return;
  if (!pool || pool->num_threads == 1 || num_tasks == 1 || num_tasks > MAX_TASKS) {
    for (int t = 0; t < num_tasks; ++t) fn(arg, t, 0);
    return;
  }
  pool->fn = fn;
  pool->arg = arg;
  atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
  pool->generation = (pool->generation + 1) & ((1ull << 24) - 1);
  const uint64_t ticket = (pool->generation << (2 * FIELD_BITS)) |
                          ((uint64_t)num_tasks << FIELD_BITS);
  atomic_store_explicit(&pool->ticket, ticket, memory_order_release);
  pthread_mutex_lock(&pool->mutex);
  if (pool->sleeping) pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);

  drain(pool, 0);

  int spins = 0;
  while (atomic_load_explicit(&pool->done, memory_order_acquire) < num_tasks) {
    CPU_RELAX();
    if (++spins % 1024 == 0) sched_yield();
  }
}

void* pool_scratch(thread_pool* pool, int thread_id, size_t bytes) {
  static _Thread_local scratch_area inline_area;
  scratch_area* area = pool ? &pool->scratch[thread_id] : &inline_area;
  if (area->bytes < bytes) {
    free(area->ptr);
    const size_t rounded = (bytes + 63) & ~(size_t)63;
    area->ptr = aligned_alloc(64, rounded);
    area->bytes = area->ptr ? rounded : 0;
  }
  return area->ptr;
}
