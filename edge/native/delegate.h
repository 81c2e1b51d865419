/* What the delegate's files share: its state, a partition (the kernel that replaces one
 * run of claimed nodes) and the functions each file offers the others.
 *
 *   delegate.c   the TFLite entry points and every exported symbol: create / destroy,
 *                Prepare (claiming nodes), the ctypes helpers
 *   partition.c  kernel registration and one partition's init / free / prepare / invoke,
 *                its owned memory plan
 *   fusion.c     fusion planning: which builtin nodes to claim next to ours, and in a
 *                partition what is fused into what
 *   options.c    load_delegate options and BINLAND_* environment variables
 *   profile.c    profiling: partitions registered for it, counters, JSON, stderr summaries
 *
 * Calls point one way: delegate.c calls into the four others, partition.c into fusion.c and
 * profile.c, and those three into none of them; all of them reach the ops only through
 * lce_ops.h and float_ops.h. */
#ifndef BINLAND_DELEGATE_H_
#define BINLAND_DELEGATE_H_

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <time.h>

#include "bgemm.h"
#include "lce_ops.h"
#include "tflite_abi.h"
#include "threadpool.h"

struct partition;

typedef struct {
  /* Owners: the delegate, and each partition (kernel) made from it. Python's garbage
   * collector may destroy the delegate before the interpreter whose nodes it runs (in a
   * reference cycle the two finalizers run in any order), and the interpreter then frees
   * those nodes, which lock this state: so it lives until its last owner lets go. */
  atomic_int refs;
  TfLiteDelegate* delegate; /* freed with the state, for the same reason */
  pthread_mutex_t lock; /* one invoke at a time per delegate: the pool is shared */
  thread_pool* pool;
  int num_threads_option; /* 0: follow the interpreter's num_threads */
  const bgemm_impl* gemm;
  int fuse; /* claim MUL/ADD chains that feed an LceQuantize (option fuse, default 1) */
  int conv_path; /* BCONV_AUTO / _DIRECT / _IM2COL (option conv, BINLAND_CONV) */
  /* BINLAND_PROFILE=1 (or option profile=1): seconds and calls per op kind, printed at
   * destroy; per op and per partition through binland_profile_json. */
  int profile;
  double op_seconds[LCE_OP_KINDS];
  long op_calls[LCE_OP_KINDS];
  /* Live partitions, for the profile. */
  struct partition** parts;
  int num_parts, cap_parts, next_seq;
  /* Between binland_profile_begin and _end: when the last partition (or the
   * run) ended, so the gap before each partition is the runtime's builtin ops. */
  int marked;
  double last_exit, tail_seconds;
  long runs;
} delegate_state;

void delegate_state_retain(delegate_state* state);
/* Drops one owner; the last frees the state, its pool and the TfLiteDelegate. */
void delegate_state_release(delegate_state* state);

typedef struct {
  int tensor;
  void* data;
  size_t bytes;
} owned_buffer;

typedef struct partition {
  delegate_state* state;
  int num_ops;
  lce_op* ops;
  int num_owned;
  owned_buffer* owned;
  /* The memory behind the owned tensors: tensors whose lifetimes do not
   * overlap share a slot (plan_owned_buffers). */
  int num_slots;
  void** slots;
  int num_nodes; /* every node this partition replaced, fused builtins too */
  int* nodes;
  /* For the memory budget (LCE_MEMORY_BUDGET), set by kernel_prepare: what the ops allocate
   * for themselves plus the owned tensors' slots, and the most scratch one task takes. */
  size_t fixed_bytes, task_scratch;
  int seq; /* order of first invoke, -1 before */
  double seconds, gap_seconds;
  long calls, gap_calls;
  char error[512];
} partition;

static inline double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The runtime appends its own line ("Node number N ... failed to prepare") to ours with
 * nothing between them: end ours with a newline (the Python side joins the lines). */
static inline void report(TfLiteContext* context, const char* message) {
  context->ReportError(context, "binland delegate: %s\n", message);
}

static inline int is_partition_output(const TfLiteDelegateParams* params, int tensor) {
  for (int i = 0; i < params->output_tensors->size; ++i) {
    if (params->output_tensors->data[i] == tensor) return 1;
  }
  return 0;
}

static inline owned_buffer* find_owned(partition* part, int tensor) {
  for (int i = 0; i < part->num_owned; ++i) {
    if (part->owned[i].tensor == tensor) return &part->owned[i];
  }
  return NULL;
}

/* options.c: the options of load_delegate and the BINLAND_* environment variables into
 * `state`. Returns 0, or -1 with the message to report. */
int options_parse(delegate_state* state, char** options_keys, char** options_values,
                  size_t num_options, char* message, size_t message_len);

/* partition.c: the kernel that runs one partition of claimed nodes. */
TfLiteRegistration kernel_registration(void);

/* fusion.c, at claim time (delegate_prepare): */

/* A builtin MUL or ADD by a constant, fusable into the LceQuantize it feeds:
 * two inputs, one of them a float32 constant (a scalar or one value per
 * channel of the other), the other of the output's shape, no activation.
 * Returns PRE_MUL / PRE_ADD and sets *input and *constant, or -1. */
int fusable_affine(const TfLiteContext* context, const TfLiteNode* node,
                   const TfLiteRegistration* reg, int* input, int* constant);

/* Marks in `take` (by plan position) the builtin nodes to claim with ours: the MUL/ADD chains
 * before each float LceQuantize, a concat of binary conv outputs and the ADD that is its only
 * reader, and the pooling, upsampling and sums next to a taken node. Does nothing when
 * `producer` (the node writing each tensor) is NULL: fuse=0. */
void fusion_claim(TfLiteContext* context, const int* plan, int plan_size, char* take,
                  const int* position, const int* producer, const int* readers);

/* fusion.c, in a partition (kernel_init and kernel_prepare): */

/* A builtin ADD node: fused into the concat of ours that produces one operand, else an ADD
 * op of its own. 0, or -1 with part->error set. */
int fusion_add_node(partition* part, const TfLiteDelegateParams* params, int node_index,
                    const TfLiteNode* node);

/* The quantize `op` absorbs the ADD, then the MUL, waiting in `pending` ([which, node, input,
 * constant] each; node -1 once used) that produce its input. Sets part->error on failure. */
void fusion_take_pending(partition* part, TfLiteContext* context,
                         const TfLiteDelegateParams* params, lce_op* op, int* pending,
                         int num_pending);

void hoist_add_operand(partition* part, int index);
void link_concat(partition* part, int index);
void link_resize_add(partition* part, int index);
void absorb_quantizes(partition* part, lce_op_kind kind);

/* Whether `op` touches `tensor` when it runs: reads it, writes it, or writes
 * or reads it for an op fused into it (an absorbed quantize, the concat (+ ADD)
 * it writes into, a fused MUL / ADD output it stores). */
int op_touches(const lce_op* op, int tensor);

/* profile.c */
void profile_register(partition* part);
void profile_unregister(partition* part);
void profile_print_convs(const partition* part);
void profile_print_kinds(const delegate_state* state);
int profile_begin(delegate_state* state);
int profile_end(delegate_state* state);
int profile_reset(delegate_state* state);
long profile_json(delegate_state* state, char* buf, size_t len);

#endif /* BINLAND_DELEGATE_H_ */
