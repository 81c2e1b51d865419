/* The external-delegate entry points that stock TFLite runtimes call through
 * `load_delegate(path, options)`.
 *
 * The delegate claims every node whose custom op name starts with "Lce" and
 * leaves builtin ops to the runtime (and its XNNPACK). Three facts make this
 * work in unmodified runtimes (see docs): the AllowDynamicTensors flag (else
 * the runtime allocates the graph, and fails on the unresolved custom ops,
 * before our Prepare runs); tensors internal to a claimed partition get no
 * memory from the runtime, so we own their buffers; and node pointers die
 * when nodes are replaced, so tensor indices are copied at init.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "bgemm.h"
#include "float_ops.h"
#include "lce_ops.h"
#include "tflite_abi.h"
#include "threadpool.h"

#define EXPORT __attribute__((visibility("default")))

struct partition;

typedef struct {
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

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A builtin MUL or ADD by a constant, fusable into the LceQuantize it feeds:
 * two inputs, one of them a float32 constant (a scalar or one value per
 * channel of the other), the other of the output's shape, no activation.
 * Returns PRE_MUL / PRE_ADD and sets *input and *constant, or -1. */
static int fusable_affine(const TfLiteContext* context, const TfLiteNode* node,
                          const TfLiteRegistration* reg, int* input, int* constant) {
  if (!node || !reg || reg->custom_name) return -1;
  const int which = reg->builtin_code == kTfLiteBuiltinMul   ? PRE_MUL
                    : reg->builtin_code == kTfLiteBuiltinAdd ? PRE_ADD
                                                             : -1;
  if (which < 0 || !node->inputs || node->inputs->size != 2 || !node->outputs ||
      node->outputs->size != 1 || !node->builtin_data ||
      *(const int*)node->builtin_data != kTfLiteActNone) {
    return -1;
  }
  const int out = node->outputs->data[0];
  if (out < 0 || (size_t)out >= context->tensors_size) return -1;
  const TfLiteTensor* y = &context->tensors[out];
  for (int k = 0; k < 2; ++k) {
    const int a = node->inputs->data[k], b = node->inputs->data[1 - k];
    if (a < 0 || b < 0 || (size_t)a >= context->tensors_size ||
        (size_t)b >= context->tensors_size) {
      return -1;
    }
    const TfLiteTensor* x = &context->tensors[a];
    const TfLiteTensor* c = &context->tensors[b];
    if (x->type != kTfLiteFloat32 || y->type != kTfLiteFloat32 || c->type != kTfLiteFloat32 ||
        c->allocation_type != kTfLiteMmapRo || !c->data || !x->dims || !y->dims || !c->dims ||
        x->allocation_type == kTfLiteMmapRo || x->dims->size != y->dims->size ||
        y->dims->size < 1) {
      continue;
    }
    int same = 1;
    for (int i = 0; i < x->dims->size; ++i) same &= x->dims->data[i] == y->dims->data[i];
    const int channels = y->dims->data[y->dims->size - 1];
    size_t n = 1;
    for (int i = 0; i < c->dims->size; ++i) n *= (size_t)(c->dims->data[i] > 0 ? c->dims->data[i] : 0);
    const int per_channel =
        n == (size_t)channels && c->dims->size >= 1 && c->dims->data[c->dims->size - 1] == channels;
    if (same && (n == 1 || per_channel)) {
      *input = a;
      *constant = b;
      return which;
    }
  }
  return -1;
}

/* The runtime appends its own line ("Node number N ... failed to prepare") to ours with
 * nothing between them: end ours with a newline (the Python side joins the lines). */
static void report(TfLiteContext* context, const char* message) {
  context->ReportError(context, "binland delegate: %s\n", message);
}

/* ---------------------------------------------------------- kernel (one
 * per partition of consecutive claimed nodes) */

static int is_partition_output(const TfLiteDelegateParams* params, int tensor) {
  for (int i = 0; i < params->output_tensors->size; ++i) {
    if (params->output_tensors->data[i] == tensor) return 1;
  }
  return 0;
}

/* The tensors `op` stores: its output, and the outputs of the ops fused into
 * it that it also stores (a quantize's MUL / ADD, a concat's own output under
 * its ADD); -1 where there is none. */
static void stored_by(const lce_op* op, int out[4]) {
  out[0] = op->output;
  out[1] = op->kind == OP_QUANTIZE ? op->pre_mul_out : -1;
  out[2] = op->kind == OP_QUANTIZE ? op->pre_add_out : -1;
  out[3] = op->kind == OP_CONCAT ? op->cat_out : -1;
}

static int stores(const lce_op* op, int tensor) {
  int out[4];
  stored_by(op, out);
  for (int t = 0; t < 4; ++t) {
    if (out[t] >= 0 && out[t] == tensor) return 1;
  }
  return 0;
}

/* The op of the partition that writes `tensor` (its output, or a fused op's
 * output it also stores), or -1 (a tensor from outside, or a constant). */
static int writer_of(const partition* part, int tensor) {
  for (int i = 0; tensor >= 0 && i < part->num_ops; ++i) {
    if (stores(&part->ops[i], tensor)) return i;
  }
  return -1;
}

/* Whether `op` reads `tensor`. */
static int op_reads(const lce_op* op, int tensor) {
  for (int k = 0; k < op->num_inputs; ++k) {
    if (op->inputs[k] == tensor) return 1;
  }
  for (int k = 0; op->kind == OP_CONCAT && k < op->cat_n; ++k) {
    if (op->cat_in[k] == tensor) return 1;
  }
  return op->kind == OP_CONCAT && op->add_other >= 0 && op->add_other == tensor;
}

/* A concat + ADD whose other operand is computed by ops of ours that run after
 * the concat's first input (the binary 1x1 skip conv of an HPM block with
 * binary_skip, which the converter orders after the block's concat): runs those
 * ops, and what they need from that stretch, first, so that the convs can write
 * into the summed output (link_concat). Any topological order of the partition's
 * ops is valid; nothing moves when the operand depends on a concat input. */
static void hoist_add_operand(partition* part, int index) {
  const lce_op* k = &part->ops[index];
  if (k->kind != OP_CONCAT || k->add_other < 0) return;
  int first = index;
  for (int s = 0; s < k->cat_n; ++s) {
    const int w = writer_of(part, k->cat_in[s]);
    if (w >= 0 && w < first) first = w;
  }
  const int last = writer_of(part, k->add_other);
  if (last < first || last >= index) return;
  const int span = last - first + 1;
  char* need = calloc((size_t)span, 1);
  lce_op* moved = malloc(sizeof(lce_op) * (size_t)span);
  if (!need || !moved) {
    free(need), free(moved);
    return;
  }
  need[span - 1] = 1;
  for (int i = last; i >= first; --i) {
    if (!need[i - first]) continue;
    for (int j = first; j < i; ++j) {
      int writes[4];
      stored_by(&part->ops[j], writes);
      for (int t = 0; t < 4; ++t) {
        if (writes[t] >= 0 && op_reads(&part->ops[i], writes[t])) need[j - first] = 1;
      }
    }
  }
  int possible = 1;
  for (int s = 0; s < k->cat_n; ++s) {
    const int w = writer_of(part, k->cat_in[s]);
    if (w >= first && w <= last && need[w - first]) possible = 0;
  }
  if (possible) { /* stable: the needed ops, then the others, each in their order */
    int n = 0;
    for (int pass = 1; pass >= 0; --pass) {
      for (int i = first; i <= last; ++i) {
        if (need[i - first] == pass) moved[n++] = part->ops[i];
      }
    }
    memcpy(&part->ops[first], moved, sizeof(lce_op) * (size_t)span);
  }
  free(need), free(moved);
}

static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  partition* part = calloc(1, sizeof(partition));
  if (!part) return NULL;
  part->state = (delegate_state*)params->delegate->data_;
  const int n = params->nodes_to_replace->size;
  part->seq = -1;
  part->ops = calloc((size_t)(n > 0 ? n : 1), sizeof(lce_op));
  part->owned = calloc((size_t)(n > 0 ? n : 1), sizeof(owned_buffer));
  part->nodes = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
  /* Fusable MUL/ADD nodes wait here for the LceQuantize they feed. */
  int* pending = calloc((size_t)(n > 0 ? n : 1), sizeof(int) * 4);
  int num_pending = 0;
  if (!part->ops || !part->owned || !part->nodes || !pending) {
    free(pending);
    snprintf(part->error, sizeof(part->error), "out of memory");
    return part;
  }
  part->num_nodes = n;
  memcpy(part->nodes, params->nodes_to_replace->data, sizeof(int) * (size_t)n);
  for (int i = 0; i < n; ++i) {
    const int node_index = params->nodes_to_replace->data[i];
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, node_index, &node, &reg) != kTfLiteOk || !node ||
        !reg) {
      snprintf(part->error, sizeof(part->error), "cannot read node %d", node_index);
      break;
    }
    int input = -1, constant = -1;
    const int which = fusable_affine(context, node, reg, &input, &constant);
    if (which >= 0) {
      int* p = pending + 4 * num_pending++;
      p[0] = which, p[1] = node_index, p[2] = input, p[3] = constant;
      continue;
    }
    if (!reg->custom_name && reg->builtin_code == kTfLiteBuiltinAdd) {
      /* concat + other: fused into the concat that produces one operand. */
      lce_op* concat = NULL;
      int other = -1;
      for (int j = 0; node->inputs && node->inputs->size == 2 && j < part->num_ops; ++j) {
        lce_op* k = &part->ops[j];
        if (k->kind != OP_CONCAT || k->add_other >= 0) continue;
        if (node->inputs->data[0] == k->output) concat = k, other = node->inputs->data[1];
        else if (node->inputs->data[1] == k->output) concat = k, other = node->inputs->data[0];
        if (concat) break;
      }
      for (int j = 0; concat && j < part->num_ops; ++j) {
        /* The fused op runs where the ADD is, so only the ADD may read the concat in here. */
        const lce_op* k = &part->ops[j];
        int reads = 0;
        for (int m = 0; k != concat && m < k->num_inputs; ++m) reads |= k->inputs[m] == concat->output;
        for (int m = 0; k != concat && k->kind == OP_CONCAT && m < k->cat_n; ++m) {
          reads |= k->cat_in[m] == concat->output;
        }
        reads |= k->kind == OP_CONCAT && k->add_other == concat->output;
        if (reads) concat = NULL;
      }
      if (!concat && node->inputs && node->inputs->size == 2) {
        /* The partitioner put its concat elsewhere (or another op of ours reads it):
         * an ADD on its own, as a one-input concat plus the other operand. */
        lce_op* op = &part->ops[part->num_ops];
        if (lce_op_init_add(op, node_index, node, part->state->gemm, part->error,
                            sizeof(part->error))) {
          break;
        }
        part->num_ops++;
        continue;
      }
      if (!concat || !node->outputs || node->outputs->size != 1) {
        snprintf(part->error, sizeof(part->error), "ADD node %d: expected 2 inputs, 1 output",
                 node_index);
        break;
      }
      if (lce_op_fuse_add(concat, node_index, other, node->outputs->data[0],
                          is_partition_output(params, concat->output), part->error,
                          sizeof(part->error))) {
        break;
      }
      /* The fused concat + ADD runs where the ADD was, not where the concat was: the
       * other operand may come from an op of ours that runs after the concat (the
       * binary 1x1 skip conv of an HPM block with binary_skip, which the converter
       * orders after the block's concat). Nothing here reads the concat's own output
       * (checked above) and every op is in plan order, so moving it last is safe. */
      const lce_op moved = *concat;
      lce_op* last = &part->ops[part->num_ops - 1];
      memmove(concat, concat + 1, (size_t)(last - concat) * sizeof(lce_op));
      *last = moved;
      continue;
    }
    lce_op* op = &part->ops[part->num_ops];
    if (!reg->custom_name && (reg->builtin_code == kTfLiteBuiltinMaxPool2d ||
                              reg->builtin_code == kTfLiteBuiltinResizeNearestNeighbor)) {
      if (float_op_init(op, reg->builtin_code, node_index, node, part->state->gemm, part->error,
                        sizeof(part->error))) {
        break;
      }
      part->num_ops++;
      continue;
    }
    if (!reg->custom_name && reg->builtin_code == kTfLiteBuiltinConcatenation) {
      if (lce_op_init_concat(op, node_index, node, part->state->gemm, part->error,
                             sizeof(part->error))) {
        break;
      }
      part->num_ops++;
      continue;
    }
    const char* name = reg->custom_name ? reg->custom_name : "(builtin)";
    if (lce_op_init(op, name, node_index, node, part->state->gemm, part->error,
                    sizeof(part->error))) {
      break;
    }
    op->conv_path = part->state->conv_path;
    part->num_ops++;
    /* Absorb the ADD, then the MUL, that produce this quantize's input. */
    for (int step = 0; op->kind == OP_QUANTIZE && step < 2; ++step) {
      int found = -1;
      for (int j = 0; j < num_pending; ++j) {
        TfLiteNode* pn = NULL;
        TfLiteRegistration* pr = NULL;
        if (pending[4 * j + 1] < 0) continue;
        if (context->GetNodeAndRegistration(context, pending[4 * j + 1], &pn, &pr) == kTfLiteOk &&
            pn && pn->outputs->data[0] == op->inputs[0]) {
          found = j;
          break;
        }
      }
      if (found < 0) break;
      int* p = pending + 4 * found;
      const int out = op->inputs[0];
      if (lce_op_fuse_pre(op, p[0], p[1], p[2], p[3], is_partition_output(params, out),
                          part->error, sizeof(part->error))) {
        break;
      }
      p[1] = -1; /* used */
    }
    if (part->error[0]) break;
  }
  for (int i = 0; !part->error[0] && i < part->num_ops; ++i) hoist_add_operand(part, i);
  /* An op output that nothing outside the partition reads is ours. */
  for (int i = 0; !part->error[0] && i < part->num_ops; ++i) {
    const int out = part->ops[i].output;
    if (!is_partition_output(params, out)) {
      part->owned[part->num_owned].tensor = out;
      part->num_owned++;
    }
  }
  for (int j = 0; !part->error[0] && j < num_pending; ++j) {
    if (pending[4 * j + 1] >= 0) {
      snprintf(part->error, sizeof(part->error),
               "%s node %d was claimed but feeds no LceQuantize it could be fused into",
               pending[4 * j] == PRE_MUL ? "MUL" : "ADD", pending[4 * j + 1]);
    }
  }
  free(pending);
  /* Register for the profile. */
  delegate_state* state = part->state;
  pthread_mutex_lock(&state->lock);
  if (state->num_parts == state->cap_parts) {
    const int cap = state->cap_parts ? 2 * state->cap_parts : 16;
    partition** grown = realloc(state->parts, sizeof(partition*) * (size_t)cap);
    if (grown) {
      state->parts = grown;
      state->cap_parts = cap;
    }
  }
  if (state->num_parts < state->cap_parts) state->parts[state->num_parts++] = part;
  pthread_mutex_unlock(&state->lock);
  return part;
}

static void kernel_free(TfLiteContext* context, void* buffer) {
  (void)context;
  partition* part = buffer;
  if (!part) return;
  /* BINLAND_PROFILE=2: one line per binary conv, for tuning. */
  const char* profile = getenv("BINLAND_PROFILE");
  for (int i = 0; profile && profile[0] == '2' && i < part->num_ops; ++i) {
    const lce_op* op = &part->ops[i];
    if (op->kind != OP_BCONV2D || !op->profile_calls) continue;
    const double ms = 1e3 * op->profile_seconds / (double)op->profile_calls;
    const double macs = (double)op->batch * op->out_h * op->out_w * op->out_c *
                        op->filter_h * op->filter_w * (op->channels_in / op->groups);
    fprintf(stderr,
            "binland bconv node %4d: %3dx%-3d %4d->%-4d k%dx%d s%d out=%-5s %-6s %8.3f ms %7.1f "
            "GMAC/s\n",
            op->node_index, op->out_h, op->out_w, op->channels_in, op->out_c, op->filter_h,
            op->filter_w, op->stride_h, op->out_type == kTfLiteInt32 ? "bits" : "float",
            op->direct ? "direct" : "im2col", ms, macs / (ms * 1e6));
  }
  delegate_state* state = part->state;
  pthread_mutex_lock(&state->lock);
  for (int i = 0; i < state->num_parts; ++i) {
    if (state->parts[i] == part) {
      state->parts[i] = state->parts[--state->num_parts];
      break;
    }
  }
  pthread_mutex_unlock(&state->lock);
  for (int i = 0; i < part->num_ops; ++i) lce_op_release(&part->ops[i]);
  for (int i = 0; i < part->num_slots; ++i) free(part->slots[i]);
  free(part->slots);
  free(part->ops);
  free(part->owned);
  free(part->nodes);
  free(part);
}

static owned_buffer* find_owned(partition* part, int tensor) {
  for (int i = 0; i < part->num_owned; ++i) {
    if (part->owned[i].tensor == tensor) return &part->owned[i];
  }
  return NULL;
}

static int produced_in(const partition* part, int tensor) {
  for (int i = 0; i < part->num_ops; ++i) {
    if (part->ops[i].output == tensor) return i;
  }
  return -1;
}

/* Whether any op of the partition but `except` and `except2` reads `tensor`. */
static int read_in(const partition* part, int tensor, const lce_op* except, const lce_op* except2) {
  for (int i = 0; i < part->num_ops; ++i) {
    const lce_op* op = &part->ops[i];
    if (op == except || op == except2) continue;
    for (int k = 0; k < op->num_inputs; ++k) {
      if (op->inputs[k] == tensor) return 1;
    }
    for (int k = 0; op->kind == OP_CONCAT && k < op->cat_n; ++k) {
      if (op->cat_in[k] == tensor) return 1;
    }
    if (op->kind == OP_CONCAT && op->add_other == tensor) return 1;
  }
  return 0;
}

/* A concat whose every input is a float binary conv of this partition (and
 * whose ADD operand is ready before the first of them runs): the convs write
 * into its output and it does nothing itself. */
static void link_concat(partition* part, int index) {
  lce_op* k = &part->ops[index];
  if (k->kind != OP_CONCAT || !part->state->fuse || k->cat_out >= 0) return;
  if (k->add_other >= 0 && produced_in(part, k->add_other) >= 0) {
    /* The other operand must be complete before the first conv writes. */
    int first = index;
    for (int s = 0; s < k->cat_n; ++s) {
      const int producer = produced_in(part, k->cat_in[s]);
      if (producer >= 0 && producer < first) first = producer;
    }
    if (produced_in(part, k->add_other) >= first) return;
  }
  int linked = 0;
  for (int s = 0; s < k->cat_n; ++s) {
    const int producer = produced_in(part, k->cat_in[s]);
    if (producer < 0 || producer > index || !lce_op_write_into(&part->ops[producer], k, s)) break;
    linked++;
  }
  if (linked < k->cat_n) { /* all or nothing */
    for (int s = 0; s < linked; ++s) part->ops[produced_in(part, k->cat_in[s])].into = NULL;
    return;
  }
  k->in_place = 1;
  for (int s = 0; s < k->cat_n; ++s) {
    lce_op* b = &part->ops[produced_in(part, k->cat_in[s])];
    b->write_own = read_in(part, b->output, k, b->then_quantize) ||
                   find_owned(part, b->output) == NULL; /* a partition output */
  }
}

/* Whether `op` touches `tensor` when it runs: reads it, writes it, or writes
 * or reads it for an op fused into it (an absorbed quantize, the concat (+ ADD)
 * it writes into, a fused MUL / ADD output it stores). */
static int op_touches(const lce_op* op, int tensor) {
  if (stores(op, tensor) || op_reads(op, tensor)) return 1;
  if (op->then_quantize && stores(op->then_quantize, tensor)) return 1;
  if (op->kind == OP_CONCAT && op->add_resize && op->add_resize->inputs[0] == tensor) return 1;
  const lce_op* k = op->into;
  return k && (stores(k, tensor) || k->add_other == tensor);
}

/* An ADD of a nearest-neighbour upsampling that only it reads (and nothing
 * outside the partition): the ADD reads the upsampling's input in place of
 * its output, which is never written. Either operand; a + b is b + a. */
static void link_resize_add(partition* part, int index) {
  lce_op* add = &part->ops[index];
  if (add->kind != OP_CONCAT || add->cat_n != 1 || add->add_other < 0 || !part->state->fuse) {
    return;
  }
  for (int side = 0; side < 2; ++side) {
    const int t = side ? add->cat_in[0] : add->add_other;
    const int w = produced_in(part, t);
    lce_op* up = w >= 0 ? &part->ops[w] : NULL;
    if (!up || up->kind != OP_RESIZE || up->absorbed || !find_owned(part, t) ||
        read_in(part, t, add, NULL)) {
      continue;
    }
    if (side) { /* the upsampling is the first operand: swap them */
      add->cat_in[0] = add->add_other;
      add->inputs[0] = add->add_other;
      add->add_other = t;
    }
    add->add_resize = up;
    up->absorbed = 1;
    return;
  }
}

/* The partition's own memory with `threads` threads: what its ops allocate for themselves,
 * the owned tensors' slots and each thread's scratch for the largest task. */
static size_t memory_needed(const partition* part, int threads) {
  size_t scratch;
  if (__builtin_mul_overflow(part->task_scratch, (size_t)threads, &scratch)) return SIZE_MAX;
  return part->fixed_bytes + scratch < scratch ? SIZE_MAX : part->fixed_bytes + scratch;
}

/* Memory for the tensors only this partition uses. Each lives from the first
 * to the last op that touches it (ops run one after the other), and tensors
 * whose lifetimes do not overlap share memory, as in TFLite's own arena: with
 * a buffer per tensor, every op wrote into memory no cache had seen for a
 * whole run. In order of first use, a tensor takes the smallest free slot
 * that fits, else the largest free slot (grown), else a new one. Nothing is
 * allocated when the plan, with the ops' own memory and `threads` threads'
 * scratch, exceeds LCE_MEMORY_BUDGET. Returns 0, -1 if out of memory, -2 over
 * the budget (memory_needed then says how much it would take). */
static int plan_owned_buffers(partition* part, int threads) {
  for (int i = 0; i < part->num_slots; ++i) free(part->slots[i]);
  free(part->slots);
  part->slots = NULL;
  part->num_slots = 0;
  const int n = part->num_owned;
  if (n == 0) return memory_needed(part, threads) > LCE_MEMORY_BUDGET ? -2 : 0;
  int* first = malloc(sizeof(int) * (size_t)n);
  int* last = malloc(sizeof(int) * (size_t)n);
  int* placed = calloc((size_t)n, sizeof(int));
  int* slot_of = malloc(sizeof(int) * (size_t)n);
  int* slot_end = malloc(sizeof(int) * (size_t)n); /* last op of the slot's latest tensor */
  size_t* slot_bytes = calloc((size_t)n, sizeof(size_t));
  part->slots = calloc((size_t)n, sizeof(void*));
  int failed = !first || !last || !placed || !slot_of || !slot_end || !slot_bytes || !part->slots;
  for (int t = 0; !failed && t < n; ++t) {
    first[t] = part->num_ops, last[t] = -1;
    for (int i = 0; i < part->num_ops; ++i) {
      if (!op_touches(&part->ops[i], part->owned[t].tensor)) continue;
      if (i < first[t]) first[t] = i;
      last[t] = i;
    }
  }
  for (int done = 0; !failed && done < n; ++done) {
    int t = -1;
    for (int u = 0; u < n; ++u) {
      if (!placed[u] && (t < 0 || first[u] < first[t])) t = u;
    }
    placed[t] = 1;
    const size_t need = part->owned[t].bytes;
    int fit = -1, grow = -1;
    for (int k = 0; k < part->num_slots; ++k) {
      if (slot_end[k] >= first[t]) continue; /* still in use */
      if (slot_bytes[k] >= need && (fit < 0 || slot_bytes[k] < slot_bytes[fit])) fit = k;
      if (grow < 0 || slot_bytes[k] > slot_bytes[grow]) grow = k;
    }
    const int k = fit >= 0 ? fit : grow >= 0 ? grow : part->num_slots++;
    if (slot_bytes[k] < need) slot_bytes[k] = need;
    slot_end[k] = last[t];
    slot_of[t] = k;
  }
  /* Each owned tensor is at most LCE_MEMORY_BUDGET (lce_op_prepare), so this cannot wrap. */
  for (int k = 0; !failed && k < part->num_slots; ++k) part->fixed_bytes += slot_bytes[k] + 128;
  int over = !failed && memory_needed(part, threads) > LCE_MEMORY_BUDGET;
  if (over) failed = 1, part->num_slots = 0;
  for (int k = 0; !failed && k < part->num_slots; ++k) {
    /* Kernels may read a few words past a row end when it is cheaper. */
    part->slots[k] = aligned_alloc(64, (slot_bytes[k] + 64 + 63) / 64 * 64);
    failed = !part->slots[k];
  }
  for (int t = 0; !failed && t < n; ++t) part->owned[t].data = part->slots[slot_of[t]];
  free(first), free(last), free(placed), free(slot_of), free(slot_end), free(slot_bytes);
  return over ? -2 : failed ? -1 : 0;
}

static int wanted_threads(const delegate_state* state, const TfLiteContext* context) {
  if (state->num_threads_option > 0) return state->num_threads_option;
  if (context->recommended_num_threads > 0) return context->recommended_num_threads;
  return 1;
}

/* Each op of `kind` takes the quantize that reads its output, where it can
 * (lce_op_absorb). */
static void absorb_quantizes(partition* part, lce_op_kind kind) {
  for (int i = 0; part->state->fuse && i < part->num_ops; ++i) {
    for (int j = 0; part->ops[i].kind == kind && j < part->num_ops; ++j) {
      if (j != i && part->ops[j].kind == OP_QUANTIZE && lce_op_absorb(&part->ops[i], &part->ops[j])) {
        break;
      }
    }
  }
}

static TfLiteStatus kernel_prepare(TfLiteContext* context, TfLiteNode* node) {
  partition* part = node->user_data;
  if (!part) {
    report(context, "out of memory");
    return kTfLiteError;
  }
  if (part->error[0]) {
    report(context, part->error);
    return kTfLiteError;
  }
  for (int i = 0; i < part->num_ops; ++i) {
    lce_op* op = &part->ops[i];
    if (lce_op_prepare(op, context, part->error, sizeof(part->error))) {
      report(context, part->error);
      part->error[0] = 0; /* a later re-prepare may succeed */
      return kTfLiteError;
    }
    owned_buffer* own = find_owned(part, op->output);
    if (own) own->bytes = op->out_bytes;
  }
  /* A binary conv computes the quantize of its float output in its epilogue;
   * an ADD on its own (known only once the concats are linked: not written in
   * place by its convs) as it writes each row. */
  absorb_quantizes(part, OP_BCONV2D);
  for (int i = 0; i < part->num_ops; ++i) link_concat(part, i);
  absorb_quantizes(part, OP_CONCAT);
  for (int i = 0; i < part->num_ops; ++i) link_resize_add(part, i);
  part->fixed_bytes = part->task_scratch = 0;
  for (int i = 0; i < part->num_ops; ++i) {
    const lce_op* op = &part->ops[i];
    part->fixed_bytes += op->own_bytes; /* each at most LCE_MEMORY_BUDGET */
    if (op->scratch_bytes > part->task_scratch) part->task_scratch = op->scratch_bytes;
  }
  const int threads = wanted_threads(part->state, context);
  const int planned = plan_owned_buffers(part, threads);
  if (planned == -2) {
    snprintf(part->error, sizeof(part->error),
             "this model needs %zu MB of the delegate's own memory with %d thread(s), more "
             "than its %zu MB limit", memory_needed(part, threads) >> 20, threads,
             (size_t)LCE_MEMORY_BUDGET >> 20);
    report(context, part->error);
    part->error[0] = 0;
    return kTfLiteError;
  }
  if (planned) {
    report(context, "out of memory");
    return kTfLiteError;
  }
  return kTfLiteOk;
}

static void* tensor_data(partition* part, TfLiteContext* context, int tensor) {
  owned_buffer* own = find_owned(part, tensor);
  if (own) return own->data;
  if (tensor < 0 || (size_t)tensor >= context->tensors_size) return NULL;
  return context->tensors[tensor].data;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  partition* part = node->user_data;
  delegate_state* state = part->state;
  TfLiteStatus status = kTfLiteOk;
  pthread_mutex_lock(&state->lock);
  const double entered = state->profile ? now_seconds() : 0.0;
  if (state->profile) {
    if (part->seq < 0) part->seq = state->next_seq++;
    if (state->marked) {
      part->gap_seconds += entered - state->last_exit;
      part->gap_calls++;
    }
  }
  const int threads = wanted_threads(state, context);
  if (memory_needed(part, threads) > LCE_MEMORY_BUDGET) { /* more threads than at prepare */
    pthread_mutex_unlock(&state->lock);
    report(context, "the delegate's scratch for this many threads exceeds its memory limit");
    return kTfLiteError;
  }
  if (!state->pool || pool_size(state->pool) != threads) {
    pool_destroy(state->pool);
    state->pool = pool_create(threads);
  }
  for (int i = 0; i < part->num_ops; ++i) {
    lce_op* op = &part->ops[i];
    if (op->absorbed) continue; /* done by the binary conv before it */
    const void* in = tensor_data(part, context, op->inputs[0]);
    void* out = tensor_data(part, context, op->output);
    lce_op* q = op->kind == OP_QUANTIZE ? op : op->then_quantize;
    if (q && (q->pre_mul >= 0 || q->pre_add >= 0)) {
      lce_op_set_pre_outputs(q,
                             q->pre_mul_out >= 0 ? tensor_data(part, context, q->pre_mul_out) : NULL,
                             q->pre_add_out >= 0 ? tensor_data(part, context, q->pre_add_out) : NULL);
    }
    if (op->then_quantize) op->then_output = tensor_data(part, context, op->then_quantize->output);
    if (op->into) {
      op->into_data = tensor_data(part, context, op->into->output);
      op->into_add = op->into->add_other >= 0 ? tensor_data(part, context, op->into->add_other)
                                              : NULL;
    }
    if (op->kind == OP_CONCAT) {
      for (int k = 0; k < op->cat_n; ++k) op->cat_data[k] = tensor_data(part, context, op->cat_in[k]);
      const int other = op->add_resize ? op->add_resize->inputs[0] : op->add_other;
      op->add_data = other >= 0 ? tensor_data(part, context, other) : NULL;
      op->cat_out_data = op->cat_out >= 0 ? tensor_data(part, context, op->cat_out) : NULL;
    }
    struct timespec t0, t1;
    if (state->profile) clock_gettime(CLOCK_MONOTONIC, &t0);
    const int failed =
        lce_op_run(op, context, in, out, state->pool, part->error, sizeof(part->error));
    if (state->profile) {
      clock_gettime(CLOCK_MONOTONIC, &t1);
      const double seconds =
          (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
      state->op_seconds[op->kind] += seconds;
      state->op_calls[op->kind]++;
      op->profile_seconds += seconds;
      op->profile_calls++;
    }
    if (failed) {
      report(context, part->error);
      part->error[0] = 0;
      status = kTfLiteError;
      break;
    }
  }
  if (state->profile) {
    const double left = now_seconds();
    part->seconds += left - entered;
    part->calls++;
    state->last_exit = left;
  }
  pthread_mutex_unlock(&state->lock);
  return status;
}

static TfLiteRegistration kernel_registration(void) {
  TfLiteRegistration reg;
  memset(&reg, 0, sizeof(reg));
  reg.init = kernel_init;
  reg.free = kernel_free;
  reg.prepare = kernel_prepare;
  reg.invoke = kernel_invoke;
  reg.builtin_code = kTfLiteBuiltinDelegate;
  reg.custom_name = "BinlandLceDelegate";
  reg.version = 1;
  return reg;
}

/* -------------------------------------------------------------- delegate */

static int float_tensor(const TfLiteContext* context, int t) {
  return t >= 0 && (size_t)t < context->tensors_size &&
         context->tensors[t].type == kTfLiteFloat32 && context->tensors[t].dims &&
         context->tensors[t].allocation_type != kTfLiteMmapRo;
}

static int same_dims(const TfLiteIntArray* a, const TfLiteIntArray* b) {
  if (!a || !b || a->size != b->size) return 0;
  for (int i = 0; i < a->size; ++i) {
    if (a->data[i] != b->data[i]) return 0;
  }
  return 1;
}

/* A builtin CONCATENATION of float32 tensors along the last axis, no activation,
 * with at least one input from an LceBconv2d. */
static int concat_of_bconvs(TfLiteContext* context, const TfLiteNode* node,
                            const TfLiteRegistration* reg, const int* producer) {
  if (!node || !reg || reg->custom_name || reg->builtin_code != kTfLiteBuiltinConcatenation ||
      !node->inputs || node->inputs->size < 1 || node->inputs->size > CONCAT_MAX_INPUTS ||
      !node->outputs || node->outputs->size != 1 || !node->builtin_data) {
    return 0;
  }
  const int* params = (const int*)node->builtin_data; /* axis, activation */
  const int out = node->outputs->data[0];
  if (!float_tensor(context, out) || params[1] != kTfLiteActNone) return 0;
  const int rank = context->tensors[out].dims->size;
  if (rank < 1 || (params[0] != rank - 1 && params[0] != -1)) return 0;
  int from_bconv = 0;
  for (int k = 0; k < node->inputs->size; ++k) {
    const int t = node->inputs->data[k];
    if (!float_tensor(context, t) || context->tensors[t].dims->size != rank) return 0;
    TfLiteNode* pn = NULL;
    TfLiteRegistration* pr = NULL;
    if (producer[t] >= 0 &&
        context->GetNodeAndRegistration(context, producer[t], &pn, &pr) == kTfLiteOk && pr &&
        pr->custom_name && !strcmp(pr->custom_name, "LceBconv2d")) {
      from_bconv = 1;
    }
  }
  return from_bconv;
}

/* A builtin ADD of `tensor` and another float32 tensor of its shape, no activation. */
static int sum_of_two(TfLiteContext* context, const TfLiteNode* node,
                      const TfLiteRegistration* reg, int tensor) {
  if (!node || !reg || reg->custom_name || reg->builtin_code != kTfLiteBuiltinAdd ||
      !node->inputs || node->inputs->size != 2 || !node->outputs || node->outputs->size != 1 ||
      !node->builtin_data || *(const int*)node->builtin_data != kTfLiteActNone) {
    return 0;
  }
  const int a = node->inputs->data[0], b = node->inputs->data[1], out = node->outputs->data[0];
  if (a == b || (a != tensor && b != tensor)) return 0;
  return float_tensor(context, a) && float_tensor(context, b) && float_tensor(context, out) &&
         same_dims(context->tensors[a].dims, context->tensors[b].dims) &&
         same_dims(context->tensors[a].dims, context->tensors[out].dims);
}

/* A builtin ADD of two float32 activations of the output's shape, no activation. */
static int plain_add(TfLiteContext* context, const TfLiteNode* node,
                     const TfLiteRegistration* reg) {
  return node && node->inputs && node->inputs->size == 2 &&
         sum_of_two(context, node, reg, node->inputs->data[0]);
}

/* Whether a node we take produces one of `node`'s inputs or reads its output. */
static int next_to_taken(TfLiteContext* context, const int* plan, int plan_size, const char* take,
                         const int* position, const int* producer, const TfLiteNode* node) {
  for (int k = 0; k < node->inputs->size; ++k) {
    const int t = node->inputs->data[k];
    if (t >= 0 && (size_t)t < context->tensors_size && producer[t] >= 0 &&
        take[position[producer[t]]]) {
      return 1;
    }
  }
  const int out = node->outputs->data[0];
  for (int j = 0; j < plan_size; ++j) {
    TfLiteNode* reader = NULL;
    TfLiteRegistration* reg = NULL;
    if (!take[j] || context->GetNodeAndRegistration(context, plan[j], &reader, &reg) != kTfLiteOk ||
        !reader || !reader->inputs) {
      continue;
    }
    for (int k = 0; k < reader->inputs->size; ++k) {
      if (reader->inputs->data[k] == out) return 1;
    }
  }
  return 0;
}

/* Whether every node that reads `tensor`, except `except`, stays with the
 * runtime (not an Lce op, not a MUL/ADD/CONCATENATION we might claim): then a
 * fused op's output is a partition output, stored for them. */
static int others_stay_builtin(TfLiteContext* context, const int* plan, int plan_size, int tensor,
                               int except) {
  for (int i = 0; i < plan_size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (plan[i] == except ||
        context->GetNodeAndRegistration(context, plan[i], &node, &reg) != kTfLiteOk || !node ||
        !reg || !node->inputs) {
      continue;
    }
    int reads = 0;
    for (int k = 0; k < node->inputs->size; ++k) reads |= node->inputs->data[k] == tensor;
    if (!reads) continue;
    int input, constant;
    if ((reg->custom_name && strncmp(reg->custom_name, "Lce", 3) == 0) ||
        fusable_affine(context, node, reg, &input, &constant) >= 0 ||
        (!reg->custom_name && (reg->builtin_code == kTfLiteBuiltinConcatenation ||
                               reg->builtin_code == kTfLiteBuiltinAdd ||
                               reg->builtin_code == kTfLiteBuiltinMaxPool2d ||
                               reg->builtin_code == kTfLiteBuiltinResizeNearestNeighbor))) {
      return 0;
    }
  }
  return 1;
}

/* Whether some node reads a tensor that only a node at or after it in the plan writes: a
 * graph out of execution order (a cycle, in a crafted model). The runtime's partitioner, which
 * ReplaceNodeSubsetsWithDelegateKernels calls, crashes on one, so nothing is claimed then.
 * Variable tensors are state and may be read before they are assigned. Sets message. */
static int out_of_order(TfLiteContext* context, const int* plan, int plan_size, char* message,
                        size_t len) {
  const size_t n = context->tensors_size;
  int* first_write = malloc(sizeof(int) * (n ? n : 1));
  if (!first_write) return 0; /* the runtime's own checks then decide */
  for (size_t t = 0; t < n; ++t) first_write[t] = -1;
  int found = 0;
  for (int pass = 0; pass < 2 && !found; ++pass) {
    for (int i = 0; i < plan_size && !found; ++i) {
      TfLiteNode* node = NULL;
      TfLiteRegistration* reg = NULL;
      if (context->GetNodeAndRegistration(context, plan[i], &node, &reg) != kTfLiteOk || !node) {
        continue;
      }
      const TfLiteIntArray* list = pass == 0 ? node->outputs : node->inputs;
      for (int k = 0; list && k < list->size && !found; ++k) {
        const int t = list->data[k];
        if (t < 0 || (size_t)t >= n) continue;
        if (pass == 0) {
          if (first_write[t] < 0) first_write[t] = i;
        } else if (first_write[t] >= i && !context->tensors[t].is_variable) {
          snprintf(message, len, "binland delegate: node %d reads tensor %d before node %d "
                   "writes it (the graph is not in execution order)", plan[i], t,
                   plan[first_write[t]]);
          found = 1;
        }
      }
    }
  }
  free(first_write);
  return found;
}

static TfLiteStatus delegate_prepare(TfLiteContext* context, TfLiteDelegate* delegate) {
  TfLiteIntArray* plan = NULL;
  if (context->GetExecutionPlan(context, &plan) != kTfLiteOk || !plan) return kTfLiteError;
  const int plan_size = plan->size;
  int* plan_copy = malloc(sizeof(int) * (size_t)(plan_size > 0 ? plan_size : 1));
  TfLiteIntArray* claimed =
      malloc(sizeof(TfLiteIntArray) + sizeof(int) * (size_t)(plan_size > 0 ? plan_size : 1));
  if (!plan_copy || !claimed) {
    free(plan_copy);
    free(claimed);
    report(context, "out of memory");
    return kTfLiteError;
  }
  memcpy(plan_copy, plan->data, sizeof(int) * (size_t)plan_size);
  claimed->size = 0;
  char message[256];
  if (out_of_order(context, plan_copy, plan_size, message, sizeof(message))) {
    free(plan_copy);
    free(claimed);
    context->ReportError(context, "%s\n", message);
    return kTfLiteError;
  }
  const delegate_state* state = delegate->data_;
  /* For fusion: who produces each tensor, and how many nodes read it. */
  const size_t num_tensors = context->tensors_size;
  int* producer = state->fuse ? malloc(sizeof(int) * (num_tensors ? num_tensors : 1)) : NULL;
  int* readers = state->fuse ? calloc(num_tensors ? num_tensors : 1, sizeof(int)) : NULL;
  char* take = calloc((size_t)(plan_size > 0 ? plan_size : 1), 1);
  int* position = NULL; /* plan position of a node index */
  int max_node = 0;
  for (int i = 0; i < plan_size; ++i) max_node = plan_copy[i] > max_node ? plan_copy[i] : max_node;
  position = malloc(sizeof(int) * (size_t)(max_node + 1));
  if (!take || !position || (state->fuse && (!producer || !readers))) {
    free(plan_copy), free(claimed), free(producer), free(readers), free(take), free(position);
    report(context, "out of memory");
    return kTfLiteError;
  }
  for (size_t t = 0; producer && t < num_tensors; ++t) producer[t] = -1;
  for (int i = 0; i < plan_size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    position[plan_copy[i]] = i;
    if (context->GetNodeAndRegistration(context, plan_copy[i], &node, &reg) != kTfLiteOk || !reg) {
      continue;
    }
    if (reg->custom_name && strncmp(reg->custom_name, "Lce", 3) == 0) take[i] = 1;
    if (!producer || !node) continue;
    for (int k = 0; node->inputs && k < node->inputs->size; ++k) {
      const int t = node->inputs->data[k];
      if (t >= 0 && (size_t)t < num_tensors) readers[t]++;
    }
    for (int k = 0; node->outputs && k < node->outputs->size; ++k) {
      const int t = node->outputs->data[k];
      if (t >= 0 && (size_t)t < num_tensors) producer[t] = plan_copy[i];
    }
  }
  /* A float LceQuantize absorbs the ADD and the MUL before it: the folded
   * BatchNorm in front of every binary conv. */
  for (int i = 0; producer && i < plan_size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (!take[i] || context->GetNodeAndRegistration(context, plan_copy[i], &node, &reg) != kTfLiteOk ||
        !reg || !reg->custom_name || strcmp(reg->custom_name, "LceQuantize") != 0 || !node ||
        !node->inputs || node->inputs->size != 1) {
      continue;
    }
    int tensor = node->inputs->data[0];
    int chain_next = plan_copy[i]; /* the node the fused chain feeds */
    int last = PRE_ADD + 1; /* ADD may come first (nearest the quantize), then MUL */
    /* A MUL/ADD output that other nodes read too (the converter merges identical
     * BatchNorms) is still fused: the quantize then also stores it, in the same pass. */
    while (tensor >= 0 && (size_t)tensor < num_tensors && producer[tensor] >= 0) {
      TfLiteNode* pn = NULL;
      TfLiteRegistration* pr = NULL;
      if (context->GetNodeAndRegistration(context, producer[tensor], &pn, &pr) != kTfLiteOk) break;
      int input = -1, constant = -1;
      const int which = fusable_affine(context, pn, pr, &input, &constant);
      if (which < 0 || which >= last) break;
      if (readers[tensor] > 1 &&
          !others_stay_builtin(context, plan_copy, plan_size, tensor, chain_next)) {
        break;
      }
      take[position[producer[tensor]]] = 1;
      chain_next = producer[tensor];
      last = which;
      tensor = input;
    }
  }
  /* A float CONCATENATION (last axis) of binary conv outputs, and the ADD that is
   * its only reader (the HPM block's concat + skip). */
  for (int i = 0; producer && i < plan_size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, plan_copy[i], &node, &reg) != kTfLiteOk ||
        !concat_of_bconvs(context, node, reg, producer)) {
      continue;
    }
    take[i] = 1;
    const int out = node->outputs->data[0];
    if (readers[out] != 1) continue;
    for (int j = i + 1; j < plan_size; ++j) {
      TfLiteNode* an = NULL;
      TfLiteRegistration* ar = NULL;
      if (context->GetNodeAndRegistration(context, plan_copy[j], &an, &ar) != kTfLiteOk || !an ||
          !an->inputs) {
        continue;
      }
      int reads = 0;
      for (int k = 0; k < an->inputs->size; ++k) reads |= an->inputs->data[k] == out;
      if (!reads) continue;
      if (sum_of_two(context, an, ar, out)) take[j] = 1;
      break;
    }
  }
  /* The hourglass's pooling, upsampling and sums between our ops: each one left
   * to the runtime splits a partition in two (and the switch between our threads
   * and the runtime's costs more than these ops). Taken when next to a node we
   * take, until nothing changes, so a chain of them between our ops goes too. */
  for (int changed = producer != NULL; changed;) {
    changed = 0;
    for (int i = 0; i < plan_size; ++i) {
      TfLiteNode* node = NULL;
      TfLiteRegistration* reg = NULL;
      if (take[i] ||
          context->GetNodeAndRegistration(context, plan_copy[i], &node, &reg) != kTfLiteOk ||
          !node || !reg || reg->custom_name ||
          !(float_op_supported(context, node, reg->builtin_code) || plain_add(context, node, reg))) {
        continue;
      }
      if (next_to_taken(context, plan_copy, plan_size, take, position, producer, node)) {
        take[i] = 1;
        changed = 1;
      }
    }
  }
  for (int i = 0; i < plan_size; ++i) {
    if (take[i]) claimed->data[claimed->size++] = plan_copy[i];
  }
  free(producer), free(readers), free(take), free(position);
  TfLiteStatus status = kTfLiteOk;
  if (claimed->size > 0) {
    status = context->ReplaceNodeSubsetsWithDelegateKernels(context, kernel_registration(), claimed,
                                                            delegate);
  }
  free(plan_copy);
  free(claimed);
  return status;
}

static int parse_int(const char* text, int* out) {
  char* end = NULL;
  const long v = strtol(text, &end, 10);
  if (!text[0] || *end || v < 0 || v > 1024) return -1;
  *out = (int)v;
  return 0;
}

/* "auto" (or NULL / empty: the default), "direct", "im2col"; 0, or -1 if unknown. */
static int parse_conv_path(const char* value, int* out) {
  if (!value || !*value || !strcmp(value, "auto")) {
    *out = BCONV_AUTO;
  } else if (!strcmp(value, "direct")) {
    *out = BCONV_DIRECT;
  } else if (!strcmp(value, "im2col")) {
    *out = BCONV_IM2COL;
  } else {
    return -1;
  }
  return 0;
}

EXPORT TfLiteDelegate* tflite_plugin_create_delegate(char** options_keys, char** options_values,
                                                     size_t num_options,
                                                     void (*report_error)(const char*)) {
  delegate_state* state = calloc(1, sizeof(delegate_state));
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  char message[256];
  if (!state || !delegate) {
    free(state);
    free(delegate);
    if (report_error) report_error("binland delegate: out of memory");
    return NULL;
  }
  state->gemm = bgemm_pick(getenv("BINLAND_SIMD"));
  state->profile = getenv("BINLAND_PROFILE") && getenv("BINLAND_PROFILE")[0] >= '1';
  state->fuse = !(getenv("BINLAND_FUSE") && !strcmp(getenv("BINLAND_FUSE"), "0"));
  int conv_env_ok = parse_conv_path(getenv("BINLAND_CONV"), &state->conv_path);
  for (size_t i = 0; i < num_options; ++i) {
    const char* key = options_keys[i];
    const char* value = options_values[i];
    if (!strcmp(key, "num_threads")) {
      if (parse_int(value, &state->num_threads_option) == 0) continue;
      snprintf(message, sizeof(message),
               "binland delegate: num_threads must be an integer 0..1024, got '%s'", value);
    } else if (!strcmp(key, "fuse") || !strcmp(key, "profile")) {
      if (!strcmp(value, "0") || !strcmp(value, "1")) {
        if (!strcmp(key, "fuse")) {
          state->fuse = value[0] == '1';
        } else {
          state->profile = value[0] == '1';
        }
        continue;
      }
      snprintf(message, sizeof(message), "binland delegate: %s must be 0 or 1, got '%s'", key,
               value);
    } else if (!strcmp(key, "conv")) {
      if (parse_conv_path(value, &state->conv_path) == 0) continue;
      snprintf(message, sizeof(message),
               "binland delegate: conv must be auto, direct or im2col, got '%s'", value);
    } else if (!strcmp(key, "simd")) {
      state->gemm = bgemm_pick(value);
      if (state->gemm) continue;
      snprintf(message, sizeof(message),
               "binland delegate: simd path '%s' is not available on this CPU (available: %s)",
               value, bgemm_available());
    } else {
      snprintf(message, sizeof(message),
               "binland delegate: unknown option '%s' (known: num_threads, simd, fuse, conv, "
               "profile)",
               key);
    }
    if (report_error) report_error(message);
    free(state);
    free(delegate);
    return NULL;
  }
  if (conv_env_ok != 0) {
    snprintf(message, sizeof(message),
             "binland delegate: BINLAND_CONV must be auto, direct or im2col");
    if (report_error) report_error(message);
    free(state);
    free(delegate);
    return NULL;
  }
  if (!state->gemm) {
    snprintf(message, sizeof(message),
             "binland delegate: BINLAND_SIMD names a path this CPU lacks (available: %s)",
             bgemm_available());
    if (report_error) report_error(message);
    free(state);
    free(delegate);
    return NULL;
  }
  pthread_mutex_init(&state->lock, NULL);
  delegate->data_ = state;
  delegate->Prepare = delegate_prepare;
  delegate->flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  return delegate;
}

EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (!delegate) return;
  delegate_state* state = delegate->data_;
  if (state) {
    if (state->profile && getenv("BINLAND_PROFILE")) {
      static const char* names[LCE_OP_KINDS] = {"LceQuantize", "LceDequantize", "LceBconv2d",
                                                "LceBMaxPool2d", "CONCATENATION",
                                                "MAX_POOL_2D",   "RESIZE_NEAREST"};
      for (int k = 0; k < LCE_OP_KINDS; ++k) {
        if (state->op_calls[k]) {
          fprintf(stderr, "binland profile: %-14s %6ld calls %10.3f ms total\n", names[k],
                  state->op_calls[k], 1e3 * state->op_seconds[k]);
        }
      }
    }
    pool_destroy(state->pool);
    pthread_mutex_destroy(&state->lock);
    free(state->parts);
    free(state);
  }
  free(delegate);
}

/* For `edge.doctor` and the tests, through ctypes. */
EXPORT const char* binland_simd_path(void) {
  const bgemm_impl* impl = bgemm_pick(getenv("BINLAND_SIMD"));
  return impl ? impl->name : "unavailable";
}
EXPORT const char* binland_simd_available(void) { return bgemm_available(); }
EXPORT int binland_abi_sizes(int which) {
  switch (which) {
    case 0: return (int)sizeof(TfLiteTensor);
    case 1: return (int)sizeof(TfLiteRegistration);
    default: return -1;
  }
}

/* Binary MACs per second that one core reaches in the GEMM micro-kernel of
 * `simd` (NULL or "" for the default path) on cache-resident data: the
 * practical ceiling for the benchmark's "arithmetic limit". -1 if `simd` is
 * not available. */
EXPORT double binland_kernel_peak(const char* simd, double seconds) {
  const bgemm_impl* impl = bgemm_pick(simd);
  if (!impl) return -1.0;
  enum { K = 72 }; /* a 3x3 conv over 256 channels, as in the paper network */
  uint32_t* a = aligned_alloc(64, sizeof(uint32_t) * K * 8);
  uint32_t* b = aligned_alloc(64, sizeof(uint32_t) * K * 32);
  int32_t* c = aligned_alloc(64, sizeof(int32_t) * 8 * 32);
  if (!a || !b || !c) {
    free(a);
    free(b);
    free(c);
    return -1.0;
  }
  uint32_t x = 12345u;
  for (int i = 0; i < K * 8; ++i) a[i] = (x = x * 1664525u + 1013904223u);
  for (int i = 0; i < K * 32; ++i) b[i] = (x = x * 1664525u + 1013904223u);
  /* Best of many short bursts: on a shared machine the average mostly
   * measures the other processes. */
  struct timespec start, t0, t1;
  double best = 1e30, total = 0.0;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (total < seconds) {
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < 64; ++r) impl->kernel(a, K, b, K, c, 32);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double burst =
        (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (burst > 0.0 && burst < best) best = burst;
    total = (double)(t1.tv_sec - start.tv_sec) + 1e-9 * (double)(t1.tv_nsec - start.tv_nsec);
  }
  const double macs = 64.0 * impl->mr * impl->nr * K * 32.0;
  free(a);
  free(b);
  free(c);
  return macs / best;
}

/* ------------------------------------------------------------- profile
 * For `python -m edge.bench --profile`, through ctypes on the pointer that
 * load_delegate returned (the same library instance the runtime loaded). The
 * delegate must have been created with profile=1 (or BINLAND_PROFILE). */

static delegate_state* profiled(TfLiteDelegate* delegate) {
  if (!delegate || delegate->Prepare != delegate_prepare) return NULL;
  return delegate->data_;
}

/* Call right before and right after interpreter.invoke(): the gap between
 * begin and the first partition, and between partitions, is builtin ops. */
EXPORT int binland_profile_begin(TfLiteDelegate* delegate) {
  delegate_state* state = profiled(delegate);
  if (!state || !state->profile) return -1;
  pthread_mutex_lock(&state->lock);
  state->marked = 1;
  state->last_exit = now_seconds();
  pthread_mutex_unlock(&state->lock);
  return 0;
}

EXPORT int binland_profile_end(TfLiteDelegate* delegate) {
  delegate_state* state = profiled(delegate);
  if (!state || !state->profile) return -1;
  pthread_mutex_lock(&state->lock);
  if (state->marked) {
    state->tail_seconds += now_seconds() - state->last_exit;
    state->runs++;
  }
  state->marked = 0;
  pthread_mutex_unlock(&state->lock);
  return 0;
}

/* Zeroes every counter (after warm-up runs). */
EXPORT int binland_profile_reset(TfLiteDelegate* delegate) {
  delegate_state* state = profiled(delegate);
  if (!state) return -1;
  pthread_mutex_lock(&state->lock);
  memset(state->op_seconds, 0, sizeof(state->op_seconds));
  memset(state->op_calls, 0, sizeof(state->op_calls));
  state->tail_seconds = 0.0;
  state->runs = 0;
  for (int i = 0; i < state->num_parts; ++i) {
    partition* part = state->parts[i];
    part->seconds = part->gap_seconds = 0.0;
    part->calls = part->gap_calls = 0;
    for (int j = 0; j < part->num_ops; ++j) {
      part->ops[j].profile_seconds = 0.0;
      part->ops[j].profile_calls = 0;
    }
  }
  pthread_mutex_unlock(&state->lock);
  return 0;
}

typedef struct {
  char* buf;
  size_t len, used;
} text_out;

static void put(text_out* out, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  const size_t room = out->used < out->len ? out->len - out->used : 0;
  const int n = vsnprintf(room ? out->buf + out->used : NULL, room, fmt, args);
  va_end(args);
  if (n > 0) out->used += (size_t)n;
}

/* The profile as JSON into buf (NUL-terminated when it fits); returns the
 * length it needs without the NUL, or -1 for a delegate that is not ours. */
EXPORT long binland_profile_json(TfLiteDelegate* delegate, char* buf, size_t len) {
  delegate_state* state = profiled(delegate);
  if (!state) return -1;
  text_out out = {buf, len, 0};
  pthread_mutex_lock(&state->lock);
  put(&out, "{\"kernel\": \"%s\", \"profile\": %d, \"fuse\": %d, \"runs\": %ld, "
      "\"tail_seconds\": %.9f, \"partitions\": [",
      state->gemm->name, state->profile, state->fuse, state->runs, state->tail_seconds);
  for (int i = 0; i < state->num_parts; ++i) {
    const partition* part = state->parts[i];
    put(&out, "%s{\"seq\": %d, \"seconds\": %.9f, \"calls\": %ld, \"gap_seconds\": %.9f, "
        "\"gap_calls\": %ld, \"nodes\": [", i ? ", " : "", part->seq, part->seconds, part->calls,
        part->gap_seconds, part->gap_calls);
    for (int j = 0; j < part->num_nodes; ++j) put(&out, "%s%d", j ? ", " : "", part->nodes[j]);
    put(&out, "], \"ops\": [");
    for (int j = 0; j < part->num_ops; ++j) {
      const lce_op* op = &part->ops[j];
      double macs = 0.0;
      if (op->kind == OP_BCONV2D) {
        macs = (double)op->batch * op->out_h * op->out_w * op->out_c * op->filter_h *
               op->filter_w * (op->channels_in / (op->groups ? op->groups : 1));
      }
      put(&out, "%s{\"node\": %d, \"op\": \"%s\", \"fused\": [", j ? ", " : "", op->node_index,
          op->name);
      int first = 1;
      const lce_op* q = op->kind == OP_QUANTIZE ? op : op->then_quantize;
      if (q && q->pre_mul_node >= 0) put(&out, "[\"MUL\", %d]", q->pre_mul_node), first = 0;
      if (q && q->pre_add_node >= 0) {
        put(&out, "%s[\"ADD\", %d]", first ? "" : ", ", q->pre_add_node), first = 0;
      }
      if (q && q != op) {
        put(&out, "%s[\"LceQuantize\", %d]", first ? "" : ", ", q->node_index), first = 0;
      }
      if (op->kind == OP_CONCAT && op->add_node >= 0 && op->add_node != op->node_index) {
        put(&out, "%s[\"ADD\", %d]", first ? "" : ", ", op->add_node), first = 0;
      }
      if (op->kind == OP_CONCAT && op->add_resize) {
        put(&out, "%s[\"RESIZE_NEAREST_NEIGHBOR\", %d]", first ? "" : ", ",
            op->add_resize->node_index), first = 0;
      }
      if (op->into) {
        put(&out, "%s[\"into\", %d]", first ? "" : ", ", op->into->node_index);
      }
      put(&out, "], \"absorbed\": %d, \"in_place\": %d, \"direct\": %d, \"seconds\": %.9f, \"calls\": %ld, \"binary_macs\": %.0f, "
          "\"output\": \"%s\", \"shape\": [%d, %d, %d, %d]}",
          op->absorbed, op->in_place, op->kind == OP_BCONV2D && op->direct, op->profile_seconds,
          op->profile_calls, macs,
          op->out_type == kTfLiteInt32 ? "bitpacked" : op->out_type == kTfLiteInt8 ? "int8" : "float32",
          op->kind == OP_BCONV2D ? op->out_h : op->rows, op->kind == OP_BCONV2D ? op->out_w : 1,
          op->kind == OP_BCONV2D ? op->channels_in : op->channels,
          op->kind == OP_BCONV2D ? op->out_c : op->channels);
    }
    put(&out, "]}");
  }
  put(&out, "]}");
  pthread_mutex_unlock(&state->lock);
  return (long)out.used;
}
