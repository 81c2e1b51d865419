/* A small fixed-size pthread pool: the caller plus n-1 workers pull task
 * indices from a shared range, even thread ids from its front and odd ones
 * from its back (so each core keeps to its own rows from op to op). Workers
 * spin briefly after a job before
 * sleeping, because a network runs dozens of short ops back to back and a
 * futex wake-up per op would cost more than the op itself. */
#ifndef BINLAND_THREADPOOL_H_
#define BINLAND_THREADPOOL_H_

#include <stddef.h>

typedef void (*pool_task_fn)(void* arg, int task, int thread_id);

typedef struct thread_pool thread_pool;

/* Returns NULL when threads cannot be created; callers then run inline. */
thread_pool* pool_create(int num_threads);
void pool_destroy(thread_pool* pool);
int pool_size(const thread_pool* pool);

/* Runs fn(arg, t, thread_id) for t in [0, num_tasks); returns when all ran.
 * pool may be NULL (everything runs on the calling thread, thread_id 0). */
void pool_run(thread_pool* pool, int num_tasks, pool_task_fn fn, void* arg);

/* Scratch memory private to one thread id, 64-byte aligned, grown on demand
 * and kept for the pool's lifetime. NULL if out of memory. */
void* pool_scratch(thread_pool* pool, int thread_id, size_t bytes);

#endif
