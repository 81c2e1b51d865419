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
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "bgemm.h"
#include "lce_ops.h"
#include "tflite_abi.h"
#include "threadpool.h"

#define EXPORT __attribute__((visibility("default")))

typedef struct {
  pthread_mutex_t lock; /* one invoke at a time per delegate: the pool is shared */
  thread_pool* pool;
  int num_threads_option; /* 0: follow the interpreter's num_threads */
  const bgemm_impl* gemm;
  /* BINLAND_PROFILE=1: seconds and calls per op kind, printed at destroy. */
  int profile;
  double op_seconds[4];
  long op_calls[4];
} delegate_state;

typedef struct {
  int tensor;
  void* data;
  size_t bytes;
} owned_buffer;

typedef struct {
  delegate_state* state;
  int num_ops;
  lce_op* ops;
  int num_owned;
  owned_buffer* owned;
  char error[512];
} partition;

static void report(TfLiteContext* context, const char* message) {
  context->ReportError(context, "binland delegate: %s", message);
}

/* ---------------------------------------------------------- kernel (one
 * per partition of consecutive claimed nodes) */

static int is_partition_output(const TfLiteDelegateParams* params, int tensor) {
  for (int i = 0; i < params->output_tensors->size; ++i) {
    if (params->output_tensors->data[i] == tensor) return 1;
  }
  return 0;
}

static void* kernel_init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)length;
  const TfLiteDelegateParams* params = (const TfLiteDelegateParams*)buffer;
  partition* part = calloc(1, sizeof(partition));
  if (!part) return NULL;
  part->state = (delegate_state*)params->delegate->data_;
  const int n = params->nodes_to_replace->size;
  part->ops = calloc((size_t)(n > 0 ? n : 1), sizeof(lce_op));
  part->owned = calloc((size_t)(n > 0 ? n : 1), sizeof(owned_buffer));
  if (!part->ops || !part->owned) {
    snprintf(part->error, sizeof(part->error), "out of memory");
    return part;
  }
  for (int i = 0; i < n; ++i) {
    const int node_index = params->nodes_to_replace->data[i];
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, node_index, &node, &reg) != kTfLiteOk || !node ||
        !reg) {
      snprintf(part->error, sizeof(part->error), "cannot read node %d", node_index);
      return part;
    }
    const char* name = reg->custom_name ? reg->custom_name : "(builtin)";
    if (lce_op_init(&part->ops[i], name, node_index, node, part->state->gemm, part->error,
                    sizeof(part->error))) {
      return part;
    }
    part->num_ops = i + 1;
    /* An op output that nothing outside the partition reads is ours. */
    const int out = part->ops[i].output;
    if (!is_partition_output(params, out)) {
      part->owned[part->num_owned].tensor = out;
      part->num_owned++;
    }
  }
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
            "binland bconv node %4d: %3dx%-3d %4d->%-4d k%dx%d s%d out=%s %8.3f ms %7.1f GMAC/s\n",
            op->node_index, op->out_h, op->out_w, op->channels_in, op->out_c, op->filter_h,
            op->filter_w, op->stride_h, op->out_type == kTfLiteInt32 ? "bits" : "float", ms,
            macs / (ms * 1e6));
  }
  for (int i = 0; i < part->num_ops; ++i) lce_op_release(&part->ops[i]);
  for (int i = 0; i < part->num_owned; ++i) free(part->owned[i].data);
  free(part->ops);
  free(part->owned);
  free(part);
}

static owned_buffer* find_owned(partition* part, int tensor) {
  for (int i = 0; i < part->num_owned; ++i) {
    if (part->owned[i].tensor == tensor) return &part->owned[i];
  }
  return NULL;
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
    if (own && own->bytes < op->out_bytes) {
      free(own->data);
      /* Kernels may read a few words past a row end when it is cheaper. */
      const size_t bytes = ((op->out_bytes + 64) + 63) / 64 * 64;
      own->data = aligned_alloc(64, bytes);
      if (!own->data) {
        own->bytes = 0;
        report(context, "out of memory");
        return kTfLiteError;
      }
      own->bytes = op->out_bytes;
    }
  }
  return kTfLiteOk;
}

static void* tensor_data(partition* part, TfLiteContext* context, int tensor) {
  owned_buffer* own = find_owned(part, tensor);
  if (own) return own->data;
  if (tensor < 0 || (size_t)tensor >= context->tensors_size) return NULL;
  return context->tensors[tensor].data;
}

static int wanted_threads(const delegate_state* state, const TfLiteContext* context) {
  if (state->num_threads_option > 0) return state->num_threads_option;
  if (context->recommended_num_threads > 0) return context->recommended_num_threads;
  return 1;
}

static TfLiteStatus kernel_invoke(TfLiteContext* context, TfLiteNode* node) {
  partition* part = node->user_data;
  delegate_state* state = part->state;
  TfLiteStatus status = kTfLiteOk;
  pthread_mutex_lock(&state->lock);
  const int threads = wanted_threads(state, context);
  if (!state->pool || pool_size(state->pool) != threads) {
    pool_destroy(state->pool);
    state->pool = pool_create(threads);
  }
  for (int i = 0; i < part->num_ops; ++i) {
    lce_op* op = &part->ops[i];
    const void* in = tensor_data(part, context, op->inputs[0]);
    void* out = tensor_data(part, context, op->output);
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
  for (int i = 0; i < plan_size; ++i) {
    TfLiteNode* node = NULL;
    TfLiteRegistration* reg = NULL;
    if (context->GetNodeAndRegistration(context, plan_copy[i], &node, &reg) != kTfLiteOk || !reg) {
      continue;
    }
    if (reg->custom_name && strncmp(reg->custom_name, "Lce", 3) == 0) {
      claimed->data[claimed->size++] = plan_copy[i];
    }
  }
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
  for (size_t i = 0; i < num_options; ++i) {
    const char* key = options_keys[i];
    const char* value = options_values[i];
    if (!strcmp(key, "num_threads")) {
      if (parse_int(value, &state->num_threads_option) == 0) continue;
      snprintf(message, sizeof(message),
               "binland delegate: num_threads must be an integer 0..1024, got '%s'", value);
    } else if (!strcmp(key, "simd")) {
      state->gemm = bgemm_pick(value);
      if (state->gemm) continue;
      snprintf(message, sizeof(message),
               "binland delegate: simd path '%s' is not available on this CPU (available: %s)",
               value, bgemm_available());
    } else {
      snprintf(message, sizeof(message),
               "binland delegate: unknown option '%s' (known: num_threads, simd)", key);
    }
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
    if (state->profile) {
      static const char* names[4] = {"LceQuantize", "LceDequantize", "LceBconv2d", "LceBMaxPool2d"};
      for (int k = 0; k < 4; ++k) {
        if (state->op_calls[k]) {
          fprintf(stderr, "binland profile: %-14s %6ld calls %10.3f ms total\n", names[k],
                  state->op_calls[k], 1e3 * state->op_seconds[k]);
        }
      }
    }
    pool_destroy(state->pool);
    pthread_mutex_destroy(&state->lock);
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
