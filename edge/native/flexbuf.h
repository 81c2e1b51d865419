/* A reader for the one flexbuffer shape LCE writes as custom options: a map
 * from keys to scalars (ints, and on older converters strings). */
#ifndef BINLAND_FLEXBUF_H_
#define BINLAND_FLEXBUF_H_

#include <stddef.h>
#include <stdint.h>

typedef enum { FLEX_MISSING = 0, FLEX_INT = 1, FLEX_STRING = 2, FLEX_OTHER = 3 } flex_kind;

typedef struct {
  flex_kind kind;
  int64_t i;
  const char* s; /* not NUL-terminated; length in slen */
  size_t slen;
} flex_value;

/* Returns 0 and fills *out (kind FLEX_MISSING when the key is absent) on a
 * well-formed map; -1 when the buffer is not a flexbuffer map. */
int flex_map_lookup(const uint8_t* buf, size_t len, const char* key, flex_value* out);

#endif
