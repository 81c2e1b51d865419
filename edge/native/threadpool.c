#define _GNU_SOURCE
#include "threadpool.h"

#include <pthread.h>
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

/* How long an idle worker keeps polling before it sleeps on the condvar. */
#define SPIN_NANOSECONDS 200000L

typedef struct {
  void* ptr;
  size_t bytes;
} scratch_area;

struct thread_pool {
  int num_threads;
  pthread_t* threads;
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  pthread_cond_t done;
  atomic_uint generation;
  atomic_int next_task;
  atomic_int busy_workers;
  int num_tasks;
  pool_task_fn fn;
  void* arg;
  int stop;
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

static void drain(thread_pool* pool, int thread_id) {
  for (;;) {
    const int t = atomic_fetch_add(&pool->next_task, 1);
    if (t >= pool->num_tasks) break;
    pool->fn(pool->arg, t, thread_id);
  }
}

static void* worker_main(void* p) {
  worker_start start = *(worker_start*)p;
  free(p);
  thread_pool* pool = start.pool;
  /* Generation 0 is the pool's state at creation: a job posted before this
   * thread got scheduled must still count as new. */
  unsigned seen = 0;
  for (;;) {
    /* Poll for a while, then sleep. */
    const long long deadline = now_ns() + SPIN_NANOSECONDS;
    int spins = 0;
    while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
      CPU_RELAX();
      if (++spins % 64 == 0 && now_ns() > deadline) break;
    }
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load(&pool->generation) == seen && !pool->stop) {
      pthread_cond_wait(&pool->wake, &pool->mutex);
    }
    const int stop = pool->stop;
    pthread_mutex_unlock(&pool->mutex);
    if (stop) break;
    seen = atomic_load(&pool->generation);
    drain(pool, start.thread_id);
    if (atomic_fetch_sub(&pool->busy_workers, 1) == 1) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->done);
      pthread_mutex_unlock(&pool->mutex);
    }
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
  pthread_cond_init(&pool->done, NULL);
  atomic_init(&pool->generation, 0u);
  atomic_init(&pool->next_task, 0);
  atomic_init(&pool->busy_workers, 0);
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
  atomic_fetch_add(&pool->generation, 1u);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
  for (int i = 1; i < pool->num_threads; ++i) pthread_join(pool->threads[i], NULL);
  for (int i = 0; i < pool->num_threads; ++i) free(pool->scratch[i].ptr);
  pthread_mutex_destroy(&pool->mutex);
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->done);
  free(pool->scratch);
  free(pool->threads);
  free(pool);
}

int pool_size(const thread_pool* pool) { return pool ? pool->num_threads : 1; }

void pool_run(thread_pool* pool, int num_tasks, pool_task_fn fn, void* arg) {
  if (num_tasks <= 0) return;
  if (!pool || pool->num_threads == 1 || num_tasks == 1) {
    for (int t = 0; t < num_tasks; ++t) fn(arg, t, 0);
    return;
  }
  pthread_mutex_lock(&pool->mutex);
  pool->fn = fn;
  pool->arg = arg;
  pool->num_tasks = num_tasks;
  atomic_store(&pool->next_task, 0);
  atomic_store(&pool->busy_workers, pool->num_threads - 1);
  atomic_fetch_add_explicit(&pool->generation, 1u, memory_order_release);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);

  drain(pool, 0);

  int spins = 0;
  while (atomic_load_explicit(&pool->busy_workers, memory_order_acquire) > 0 && spins < 100000) {
    CPU_RELAX();
    ++spins;
  }
  if (atomic_load(&pool->busy_workers) > 0) {
    pthread_mutex_lock(&pool->mutex);
    while (atomic_load(&pool->busy_workers) > 0) pthread_cond_wait(&pool->done, &pool->mutex);
    pthread_mutex_unlock(&pool->mutex);
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
