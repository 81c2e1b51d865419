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
 *
 * This file holds the entry points and every symbol the library exports; the partitions'
 * kernel is in partition.c, fusion planning in fusion.c, options in options.c and profiling
 * in profile.c (delegate.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bgemm.h"
#include "delegate.h"
#include "tflite_abi.h"

#define EXPORT __attribute__((visibility("default")))

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
  fusion_claim(context, plan_copy, plan_size, take, position, producer, readers);
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
  if (options_parse(state, options_keys, options_values, num_options, message,
                    sizeof(message))) {
    if (report_error) report_error(message);
    free(state);
    free(delegate);
    return NULL;
  }
  pthread_mutex_init(&state->lock, NULL);
  atomic_init(&state->refs, 1); /* the delegate's own */
  state->delegate = delegate;
  delegate->data_ = state;
  delegate->Prepare = delegate_prepare;
  delegate->flags = kTfLiteDelegateFlagsAllowDynamicTensors;
  return delegate;
}

void delegate_state_retain(delegate_state* state) {
  atomic_fetch_add_explicit(&state->refs, 1, memory_order_relaxed);
}

void delegate_state_release(delegate_state* state) {
  if (atomic_fetch_sub_explicit(&state->refs, 1, memory_order_acq_rel) != 1) return;
  profile_print_kinds(state);
  pool_destroy(state->pool);
  pthread_mutex_destroy(&state->lock);
  free(state->parts);
  free(state->delegate);
  free(state);
}

/* The runtime's Python wrapper calls this when its Delegate object is finalized, which may be
 * before the interpreter that uses it is (see delegate_state.refs): the partitions it made
 * keep the state (and this struct) alive until the interpreter frees them. */
EXPORT void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) {
  if (!delegate) return;
  delegate_state* state = delegate->data_;
  if (state) {
    delegate_state_release(state);
  } else {
    free(delegate);
  }
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
  return profile_begin(profiled(delegate));
}

EXPORT int binland_profile_end(TfLiteDelegate* delegate) { return profile_end(profiled(delegate)); }

/* Zeroes every counter (after warm-up runs). */
EXPORT int binland_profile_reset(TfLiteDelegate* delegate) {
  return profile_reset(profiled(delegate));
}

/* The profile as JSON into buf (NUL-terminated when it fits); returns the
 * length it needs without the NUL, or -1 for a delegate that is not ours. */
EXPORT long binland_profile_json(TfLiteDelegate* delegate, char* buf, size_t len) {
  return profile_json(profiled(delegate), buf, len);
}
