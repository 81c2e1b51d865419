/* Fusion planning. At claim time (fusion_claim): which builtin nodes the delegate takes
 * with its Lce ops, so that it can fuse them. In a partition: the MUL/ADD chains a quantize
 * absorbs and the ADD fused into its concat (kernel_init), the order that lets a concat be
 * written in place, and which op writes into or absorbs which (kernel_prepare). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delegate.h"
#include "float_ops.h"

int fusable_affine(const TfLiteContext* context, const TfLiteNode* node,
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

void fusion_claim(TfLiteContext* context, const int* plan, int plan_size, char* take,
                  const int* position, const int* producer, const int* readers) {
  const size_t num_tensors = context->tensors_size;
  /* A float LceQuantize absorbs the ADD and the MUL before it: the folded
   * BatchNorm in front of every binary conv. */
  for (int i = 0; producer && i < plan_size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (!take[i] || context->GetNodeAndRegistration(context, plan[i], &node, &reg) != kTfLiteOk ||
        !reg || !reg->custom_name || strcmp(reg->custom_name, "LceQuantize") != 0 || !node ||
        !node->inputs || node->inputs->size != 1) {
      continue;
    }
    int tensor = node->inputs->data[0];
    int chain_next = plan[i]; /* the node the fused chain feeds */
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
          !others_stay_builtin(context, plan, plan_size, tensor, chain_next)) {
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
    if (context->GetNodeAndRegistration(context, plan[i], &node, &reg) != kTfLiteOk ||
        !concat_of_bconvs(context, node, reg, producer)) {
      continue;
    }
    take[i] = 1;
    const int out = node->outputs->data[0];
    if (readers[out] != 1) continue;
    for (int j = i + 1; j < plan_size; ++j) {
      TfLiteNode* an = NULL;
      TfLiteRegistration* ar = NULL;
      if (context->GetNodeAndRegistration(context, plan[j], &an, &ar) != kTfLiteOk || !an ||
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
          context->GetNodeAndRegistration(context, plan[i], &node, &reg) != kTfLiteOk ||
          !node || !reg || reg->custom_name ||
          !(float_op_supported(context, node, reg->builtin_code) || plain_add(context, node, reg))) {
        continue;
      }
      if (next_to_taken(context, plan, plan_size, take, position, producer, node)) {
        take[i] = 1;
        changed = 1;
      }
    }
  }
}

/* ----------------------------------------------------------- in a partition */

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

int fusion_add_node(partition* part, const TfLiteDelegateParams* params, int node_index,
                    const TfLiteNode* node) {
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
      return -1;
    }
    part->num_ops++;
    return 0;
  }
  if (!concat || !node->outputs || node->outputs->size != 1) {
    snprintf(part->error, sizeof(part->error), "ADD node %d: expected 2 inputs, 1 output",
             node_index);
    return -1;
  }
  if (lce_op_fuse_add(concat, node_index, other, node->outputs->data[0],
                      is_partition_output(params, concat->output), part->error,
                      sizeof(part->error))) {
    return -1;
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
  return 0;
}

void fusion_take_pending(partition* part, TfLiteContext* context,
                         const TfLiteDelegateParams* params, lce_op* op, int* pending,
                         int num_pending) {
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
}

/* A concat + ADD whose other operand is computed by ops of ours that run after
 * the concat's first input (the binary 1x1 skip conv of an HPM block with
 * binary_skip, which the converter orders after the block's concat): runs those
 * ops, and what they need from that stretch, first, so that the convs can write
 * into the summed output (link_concat). Any topological order of the partition's
 * ops is valid; nothing moves when the operand depends on a concat input. */
void hoist_add_operand(partition* part, int index) {
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
void link_concat(partition* part, int index) {
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
int op_touches(const lce_op* op, int tensor) {
  if (stores(op, tensor) || op_reads(op, tensor)) return 1;
  if (op->then_quantize && stores(op->then_quantize, tensor)) return 1;
  if (op->kind == OP_CONCAT && op->add_resize && op->add_resize->inputs[0] == tensor) return 1;
  const lce_op* k = op->into;
  return k && (stores(k, tensor) || k->add_other == tensor);
}

/* An ADD of a nearest-neighbour upsampling that only it reads (and nothing
 * outside the partition): the ADD reads the upsampling's input in place of
 * its output, which is never written. Either operand; a + b is b + a. */
void link_resize_add(partition* part, int index) {
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

/* Each op of `kind` takes the quantize that reads its output, where it can
 * (lce_op_absorb). */
void absorb_quantizes(partition* part, lce_op_kind kind) {
  for (int i = 0; part->state->fuse && i < part->num_ops; ++i) {
    for (int j = 0; part->ops[i].kind == kind && j < part->num_ops; ++j) {
      if (j != i && part->ops[j].kind == OP_QUANTIZE && lce_op_absorb(&part->ops[i], &part->ops[j])) {
        break;
      }
    }
  }
}
