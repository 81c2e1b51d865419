#define _POSIX_C_SOURCE 200809L
#include "flexbuf.h"

#include <string.h>

/* Flexbuffer type codes (see the flexbuffers spec). */
enum {
  FBT_INT = 1,
  FBT_UINT = 2,
  FBT_KEY = 4,
  FBT_STRING = 5,
  FBT_INDIRECT_INT = 6,
  FBT_INDIRECT_UINT = 7,
  FBT_MAP = 9,
  FBT_BOOL = 26,
};

static int width_ok(uint64_t w) { return w == 1 || w == 2 || w == 4 || w == 8; }

static uint64_t read_uint(const uint8_t* p, int width) {
  switch (width) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
    case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
    default: { uint64_t v; memcpy(&v, p, 8); return v; }
  }
}

static int64_t read_int(const uint8_t* p, int width) {
  switch (width) {
    case 1: return (int8_t)p[0];
    case 2: { int16_t v; memcpy(&v, p, 2); return v; }
    case 4: { int32_t v; memcpy(&v, p, 4); return v; }
    default: { int64_t v; memcpy(&v, p, 8); return v; }
  }
}

/* Follows a backwards offset stored at `at`; -1 when it leaves the buffer. */
static int64_t deref(const uint8_t* buf, size_t len, int64_t at, int width) {
  if (at < 0 || (uint64_t)at + (uint64_t)width > len) return -1;
  uint64_t off = read_uint(buf + at, width);
  if (off > (uint64_t)at) return -1;
  return at - (int64_t)off;
}

int flex_map_lookup(const uint8_t* buf, size_t len, const char* key, flex_value* out) {
  memset(out, 0, sizeof(*out));
  if (buf == NULL || len < 3) return -1;
  const int root_width = buf[len - 1];
  const uint8_t root_packed = buf[len - 2];
  if (!width_ok((uint64_t)root_width) || (size_t)root_width + 2 > len) return -1;
  if ((root_packed >> 2) != FBT_MAP) return -1;
  const int map_width = 1 << (root_packed & 3);
  const int64_t root_pos = (int64_t)len - 2 - root_width;
  const int64_t data = deref(buf, len, root_pos, root_width);
  if (data < 3 * (int64_t)map_width) return -1;
  const uint64_t size = read_uint(buf + data - map_width, map_width);
  const uint64_t keys_width = read_uint(buf + data - 2 * map_width, map_width);
  const int64_t keys = deref(buf, len, data - 3 * map_width, map_width);
  if (keys < 0 || !width_ok(keys_width)) return -1;
  if (size > len || (uint64_t)data + size * (uint64_t)map_width + size > len) return -1;
  if ((uint64_t)keys + size * keys_width > len) return -1;
  const size_t key_len = strlen(key);
  for (uint64_t i = 0; i < size; ++i) {
    const int64_t kpos = deref(buf, len, keys + (int64_t)(i * keys_width), (int)keys_width);
    if (kpos < 0 || (uint64_t)kpos + key_len + 1 > len) return -1;
    if (memcmp(buf + kpos, key, key_len) != 0 || buf[kpos + key_len] != 0) continue;

    const int64_t vpos = data + (int64_t)i * map_width;
    const uint8_t packed = buf[data + size * map_width + i];
    const int type = packed >> 2;
    switch (type) {
      case FBT_INT:
        out->kind = FLEX_INT;
        out->i = read_int(buf + vpos, map_width);
        return 0;
      case FBT_UINT:
      case FBT_BOOL:
        out->kind = FLEX_INT;
        out->i = (int64_t)read_uint(buf + vpos, map_width);
        return 0;
      case FBT_INDIRECT_INT:
      case FBT_INDIRECT_UINT: {
        const int w = 1 << (packed & 3);
        const int64_t at = deref(buf, len, vpos, map_width);
        if (at < 0 || (uint64_t)at + (uint64_t)w > len) return -1;
        out->kind = FLEX_INT;
        out->i = type == FBT_INDIRECT_INT ? read_int(buf + at, w) : (int64_t)read_uint(buf + at, w);
        return 0;
      }
      case FBT_STRING:
      case FBT_KEY: {
        const int64_t at = deref(buf, len, vpos, map_width);
        if (at < 0) return -1;
        if (type == FBT_STRING) {
          const int w = 1 << (packed & 3);
          if (at < w) return -1;
          const uint64_t n = read_uint(buf + at - w, w);
          if ((uint64_t)at + n > len) return -1;
          out->slen = (size_t)n;
        } else {
          out->slen = strnlen((const char*)buf + at, len - (size_t)at);
        }
        out->kind = FLEX_STRING;
        out->s = (const char*)buf + at;
        return 0;
      }
      default:
        out->kind = FLEX_OTHER;
        return 0;
    }
  }
  return 0;
}
