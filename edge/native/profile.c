/* Profiling (BINLAND_PROFILE, or option profile=1): the partitions registered for it, the
 * counters behind binland_profile_begin / _end / _reset / _json (exported by delegate.c, for
 * `python -m edge.bench --profile`), and the summaries printed on stderr. The timing itself is
 * taken in kernel_invoke (partition.c), around each op and partition. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delegate.h"

/* A new partition, for the profile. */
void profile_register(partition* part) {
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
}

void profile_unregister(partition* part) {
  delegate_state* state = part->state;
  pthread_mutex_lock(&state->lock);
  for (int i = 0; i < state->num_parts; ++i) {
    if (state->parts[i] == part) {
      state->parts[i] = state->parts[--state->num_parts];
      break;
    }
  }
  pthread_mutex_unlock(&state->lock);
}

/* BINLAND_PROFILE=2: one line per binary conv, for tuning (when its partition is freed). */
void profile_print_convs(const partition* part) {
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
}

/* BINLAND_PROFILE: time per op kind, when the delegate is destroyed. */
void profile_print_kinds(const delegate_state* state) {
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
}

/* binland_profile_begin and _end: the gap between begin and the first partition, and between
 * partitions, is builtin ops. */
int profile_begin(delegate_state* state) {
  if (!state || !state->profile) return -1;
  pthread_mutex_lock(&state->lock);
  state->marked = 1;
  state->last_exit = now_seconds();
  pthread_mutex_unlock(&state->lock);
  return 0;
}

int profile_end(delegate_state* state) {
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

int profile_reset(delegate_state* state) {
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

/* The profile as JSON into buf (NUL-terminated when it fits); returns the length it needs
 * without the NUL, or -1 for no state (a delegate that is not ours). */
long profile_json(delegate_state* state, char* buf, size_t len) {
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
