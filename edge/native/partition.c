/* The kernel the runtime runs for each partition of consecutive claimed nodes: init builds
 * its ops from the nodes (with what fusion.c fuses into them), prepare checks them against the
 * tensors, links the fused work and plans the memory of the tensors it owns, invoke runs the
 * ops in order on the delegate's thread pool. Node pointers die when nodes are replaced, so
 * init copies tensor indices. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delegate.h"
#include "float_ops.h"

static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  partition* part = calloc(1, sizeof(partition));
  if (!part) return NULL;
  part->state = (delegate_state*)params->delegate->data_;
  delegate_state_retain(part->state); /* released by kernel_free */
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
      if (fusion_add_node(part, params, node_index, node)) break;
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
    fusion_take_pending(part, context, params, op, pending, num_pending);
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
  profile_register(part);
  return part;
}

static void kernel_free(TfLiteContext* context, void* buffer) {
  (void)context;
  partition* part = buffer;
  if (!part) return;
  profile_print_convs(part);
  profile_unregister(part);
  for (int i = 0; i < part->num_ops; ++i) lce_op_release(&part->ops[i]);
  for (int i = 0; i < part->num_slots; ++i) free(part->slots[i]);
  free(part->slots);
  free(part->ops);
  free(part->owned);
  free(part->nodes);
  delegate_state* state = part->state;
  free(part);
  delegate_state_release(state);
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

TfLiteRegistration kernel_registration(void) {
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
