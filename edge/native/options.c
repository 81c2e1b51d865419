/* The options of load_delegate(library, options) and the BINLAND_* environment variables
 * (BINLAND_SIMD, BINLAND_PROFILE, BINLAND_FUSE, BINLAND_CONV) into the delegate's state. Any
 * unknown option or value is an error, reported by load_delegate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delegate.h"

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

int options_parse(delegate_state* state, char** options_keys, char** options_values,
                  size_t num_options, char* message, size_t message_len) {
  state->gemm = bgemm_pick(getenv("BINLAND_SIMD"));
  state->profile = getenv("BINLAND_PROFILE") && getenv("BINLAND_PROFILE")[0] >= '1';
  state->fuse = !(getenv("BINLAND_FUSE") && !strcmp(getenv("BINLAND_FUSE"), "0"));
  int conv_env_ok = parse_conv_path(getenv("BINLAND_CONV"), &state->conv_path);
  for (size_t i = 0; i < num_options; ++i) {
    const char* key = options_keys[i];
    const char* value = options_values[i];
    if (!strcmp(key, "num_threads")) {
      if (parse_int(value, &state->num_threads_option) == 0) continue;
      snprintf(message, message_len,
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
      snprintf(message, message_len, "binland delegate: %s must be 0 or 1, got '%s'", key,
               value);
    } else if (!strcmp(key, "conv")) {
      if (parse_conv_path(value, &state->conv_path) == 0) continue;
      snprintf(message, message_len,
               "binland delegate: conv must be auto, direct or im2col, got '%s'", value);
    } else if (!strcmp(key, "simd")) {
      state->gemm = bgemm_pick(value);
      if (state->gemm) continue;
      snprintf(message, message_len,
               "binland delegate: simd path '%s' is not available on this CPU (available: %s)",
               value, bgemm_available());
    } else {
      snprintf(message, message_len,
               "binland delegate: unknown option '%s' (known: num_threads, simd, fuse, conv, "
               "profile)",
               key);
    }
    return -1;
  }
  if (conv_env_ok != 0) {
    snprintf(message, message_len,
             "binland delegate: BINLAND_CONV must be auto, direct or im2col");
    return -1;
  }
  if (!state->gemm) {
    snprintf(message, message_len,
             "binland delegate: BINLAND_SIMD names a path this CPU lacks (available: %s)",
             bgemm_available());
    return -1;
  }
  return 0;
}
