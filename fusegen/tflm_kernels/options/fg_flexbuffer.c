// FlexBuffers layout, as written by flatbuffers/include/flatbuffers/flexbuffers.h (Builder) and
// flatbuffers/python/flatbuffers/flexbuffers.py. All scalars are little-endian.
//
//   root:   ... [root value: W bytes][packed type: 1 byte][W: 1 byte]          (end of buffer)
//   packed type = (type << 2) | log2(byte width); for inline scalars (null, int, uint, float,
//   bool) the value sits in its parent's slot with the parent's width; every other type stores
//   in that slot an unsigned offset backwards from the slot to its data.
//   map:    [keys offset][keys width][size][value 0] ... [value n-1][type 0] ... [type n-1]
//           each field the map's byte width W; the keys offset is relative to its own field;
//           the keys are a typed vector of KEY: [size][offset 0]...[offset n-1], each offset
//           pointing backwards to a NUL-terminated string.
//   vector: [size][element 0] ... [element n-1] then, for untyped vectors only, one packed type
//           byte per element. Fixed typed vectors (2, 3 or 4 elements) have no size field.
//
// Positions are size_t offsets into the buffer, never pointers, so no out-of-range pointer is
// ever formed; each read first checks `pos + width <= length` without overflowing.

#include "tflm_kernels/options/fg_flexbuffer.h"

#include <string.h>

// Type codes (flexbuffers.h, enum Type).
enum {
  kTypeNull = 0,
  kTypeInt = 1,
  kTypeUInt = 2,
  kTypeFloat = 3,
  kTypeIndirectInt = 6,
  kTypeIndirectUInt = 7,
  kTypeIndirectFloat = 8,
  kTypeMap = 9,
  kTypeVector = 10,
  kTypeVectorInt = 11,
  kTypeVectorUInt = 12,
  kTypeVectorFloat = 13,
  kTypeVectorInt2 = 16,
  kTypeVectorFloat4 = 24,
  kTypeBool = 26,
  kTypeVectorBool = 36,
};

// Floats are decoded by copying their bits; that needs IEEE-754 binary32/binary64 with the same
// byte order as integers, which holds on every target fusegen supports.
typedef char FgFloatIs4Bytes[sizeof(float) == 4 ? 1 : -1];
typedef char FgDoubleIs8Bytes[sizeof(double) == 8 ? 1 : -1];

typedef struct {
  const uint8_t* data;
  size_t length;
} FgBuf;

// A value slot: where it is, the slot width (inline scalars are stored with it), and the packed
// type's width (the width of the pointed-to data for indirect scalars).
typedef struct {
  size_t pos;
  size_t parent_width;
  size_t byte_width;
  unsigned type;
} FgRef;

// A vector's elements: `size` slots of `width` bytes from `elements`. For untyped vectors and
// maps, `types` is the offset of the per-element packed type bytes; otherwise every element has
// type `element_type`.
typedef struct {
  size_t elements;
  size_t width;
  size_t size;
  int untyped;
  size_t types;
  unsigned element_type;
} FgVec;

typedef enum { kNumInt, kNumUInt, kNumFloat, kNumBool } FgNumKind;

typedef struct {
  FgNumKind kind;
  int64_t i;   // kNumInt
  uint64_t u;  // kNumUInt, kNumBool (0 or 1)
  double f;    // kNumFloat
} FgNumber;

static int IsWidth(uint64_t width) { return width == 1 || width == 2 || width == 4 || width == 8; }

// True if [pos, pos + count * width) lies inside the buffer (no overflow for any inputs).
static int FitsArray(const FgBuf* b, size_t pos, uint64_t count, size_t width) {
  if (pos > b->length) return 0;
  return count <= (uint64_t)((b->length - pos) / width);
}

static FgFlexStatus ReadUInt(const FgBuf* b, size_t pos, size_t width, uint64_t* out) {
  if (!IsWidth(width) || !FitsArray(b, pos, 1, width)) return kFgFlexMalformed;
  uint64_t v = 0;
  for (size_t i = width; i > 0; --i) v = (v << 8) | b->data[pos + i - 1];
  *out = v;
  return kFgFlexOk;
}

// Two's complement sign extension of a `width`-byte value, without implementation-defined casts.
static int64_t SignExtend(uint64_t v, size_t width) {
  if (width < 8) {
    const uint64_t sign = (uint64_t)1 << (8 * width - 1);
    v = (v ^ sign) - sign;
  }
  if (v <= (uint64_t)INT64_MAX) return (int64_t)v;
  return -(int64_t)(~v) - 1;
}

static FgFlexStatus ReadFloat(const FgBuf* b, size_t pos, size_t width, double* out) {
  uint64_t bits = 0;
  // The builders only write 4- and 8-byte floats; flexbuffers.h leaves 1- and 2-byte ones undefined.
  if (width != 4 && width != 8) return kFgFlexMalformed;
  if (ReadUInt(b, pos, width, &bits) != kFgFlexOk) return kFgFlexMalformed;
  if (width == 4) {
    const uint32_t bits32 = (uint32_t)bits;
    float f;
    memcpy(&f, &bits32, sizeof(f));
    *out = (double)f;
  } else {
    memcpy(out, &bits, sizeof(*out));
  }
  return kFgFlexOk;
}

// Follows the backward offset stored in the `width`-byte slot at `pos`.
static FgFlexStatus Indirect(const FgBuf* b, size_t pos, size_t width, size_t* target) {
  uint64_t offset = 0;
  if (ReadUInt(b, pos, width, &offset) != kFgFlexOk || offset > pos) return kFgFlexMalformed;
  *target = pos - (size_t)offset;
  return kFgFlexOk;
}

static FgRef MakeRef(size_t pos, size_t parent_width, uint8_t packed_type) {
  FgRef ref;
  ref.pos = pos;
  ref.parent_width = parent_width;
  ref.byte_width = (size_t)1 << (packed_type & 3u);
  ref.type = (unsigned)(packed_type >> 2);
  return ref;
}

static FgRef ElementRef(const FgBuf* b, const FgVec* v, size_t i) {
  const size_t pos = v->elements + i * v->width;
  if (v->untyped) return MakeRef(pos, v->width, b->data[v->types + i]);
  FgRef ref;
  ref.pos = pos;
  ref.parent_width = v->width;
  ref.byte_width = v->width;
  ref.type = v->element_type;
  return ref;
}

// A vector with a size field at `data - width`, `width`-byte elements and, if `untyped`, one type
// byte per element after them.
static FgFlexStatus OpenSizedVector(const FgBuf* b, size_t data, size_t width, int untyped,
                                    FgVec* v) {
  uint64_t size = 0;
  if (data < width || ReadUInt(b, data - width, width, &size) != kFgFlexOk) {
    return kFgFlexMalformed;
  }
  if (!FitsArray(b, data, size, untyped ? width + 1 : width)) return kFgFlexMalformed;
  v->elements = data;
  v->width = width;
  v->size = (size_t)size;
  v->untyped = untyped;
  v->types = data + v->size * width;
  v->element_type = kTypeNull;
  return kFgFlexOk;
}

// Length of the NUL-terminated key at `pos`, at most kFgFlexMaxKeyLength.
static FgFlexStatus KeyLength(const FgBuf* b, size_t pos, size_t* length) {
  if (pos >= b->length) return kFgFlexMalformed;
  size_t limit = b->length - pos;
  if (limit > (size_t)kFgFlexMaxKeyLength + 1) limit = (size_t)kFgFlexMaxKeyLength + 1;
  for (size_t i = 0; i < limit; ++i) {
    if (b->data[pos + i] == 0) {
      *length = i;
      return kFgFlexOk;
    }
  }
  return kFgFlexMalformed;
}

static FgFlexStatus OpenRoot(const FgBuf* b, FgRef* root) {
  if (b->data == NULL || b->length < 3) return kFgFlexMalformed;
  const size_t width = b->data[b->length - 1];
  if (!IsWidth(width) || b->length - 2 < width) return kFgFlexMalformed;
  *root = MakeRef(b->length - 2 - width, width, b->data[b->length - 2]);
  return kFgFlexOk;
}

// Finds `key` in the root map, after checking the map's layout and all of its keys.
static FgFlexStatus FindKey(const FgBuf* b, const char* key, FgRef* out) {
  FgRef root;
  size_t map = 0;
  FgVec values;
  if (OpenRoot(b, &root) != kFgFlexOk || root.type != kTypeMap) return kFgFlexMalformed;
  const size_t width = root.byte_width;
  if (Indirect(b, root.pos, root.parent_width, &map) != kFgFlexOk || map < 3 * width ||
      OpenSizedVector(b, map, width, 1, &values) != kFgFlexOk) {
    return kFgFlexMalformed;
  }
  size_t keys = 0;
  uint64_t keys_width = 0;
  FgVec key_offsets;
  if (Indirect(b, map - 3 * width, width, &keys) != kFgFlexOk ||
      ReadUInt(b, map - 2 * width, width, &keys_width) != kFgFlexOk || !IsWidth(keys_width) ||
      OpenSizedVector(b, keys, (size_t)keys_width, 0, &key_offsets) != kFgFlexOk ||
      key_offsets.size != values.size) {
    return kFgFlexMalformed;
  }
  size_t wanted_length = 0;  // Bounded strlen; a longer key cannot be in a well-formed map.
  while (wanted_length <= (size_t)kFgFlexMaxKeyLength && key[wanted_length] != 0) ++wanted_length;

  size_t found = values.size;
  size_t previous = 0;
  size_t previous_length = 0;
  for (size_t i = 0; i < values.size; ++i) {
    size_t current = 0;
    size_t current_length = 0;
    if (Indirect(b, keys + i * key_offsets.width, key_offsets.width, &current) != kFgFlexOk ||
        KeyLength(b, current, &current_length) != kFgFlexOk) {
      return kFgFlexMalformed;
    }
    // Comparing one byte past the shorter key includes its NUL: strcmp order.
    const size_t shorter = previous_length < current_length ? previous_length : current_length;
    if (i > 0 && memcmp(b->data + previous, b->data + current, shorter + 1) >= 0) {
      return kFgFlexMalformed;
    }
    if (current_length == wanted_length && memcmp(b->data + current, key, wanted_length) == 0) {
      found = i;
    }
    previous = current;
    previous_length = current_length;
  }
  if (found == values.size) return kFgFlexMissing;
  *out = ElementRef(b, &values, found);
  return kFgFlexOk;
}

static FgFlexStatus ReadNumber(const FgBuf* b, const FgRef* ref, FgNumber* n) {
  size_t pos = ref->pos;
  size_t width = ref->parent_width;
  unsigned type = ref->type;
  switch (type) {
    case kTypeInt:
    case kTypeUInt:
    case kTypeFloat:
    case kTypeBool:
      break;
    case kTypeIndirectInt:
    case kTypeIndirectUInt:
    case kTypeIndirectFloat:
      if (Indirect(b, ref->pos, ref->parent_width, &pos) != kFgFlexOk) return kFgFlexMalformed;
      width = ref->byte_width;
      type = type - kTypeIndirectInt + kTypeInt;
      break;
    default:
      return kFgFlexWrongType;
  }
  uint64_t raw = 0;
  if (type == kTypeFloat) {
    n->kind = kNumFloat;
    return ReadFloat(b, pos, width, &n->f);
  }
  if (ReadUInt(b, pos, width, &raw) != kFgFlexOk) return kFgFlexMalformed;
  if (type == kTypeInt) {
    n->kind = kNumInt;
    n->i = SignExtend(raw, width);
  } else if (type == kTypeUInt) {
    n->kind = kNumUInt;
    n->u = raw;
  } else {
    n->kind = kNumBool;
    n->u = raw != 0 ? 1u : 0u;
  }
  return kFgFlexOk;
}

static FgFlexStatus NumberToInt(const FgNumber* n, int64_t* value) {
  switch (n->kind) {
    case kNumInt:
      *value = n->i;
      return kFgFlexOk;
    case kNumUInt:
    case kNumBool:
      if (n->u > (uint64_t)INT64_MAX) return kFgFlexWrongType;
      *value = (int64_t)n->u;
      return kFgFlexOk;
    case kNumFloat:
    default:
      return kFgFlexWrongType;
  }
}

// The TFLite converter writes a `b: true` attribute as the int -1: its BoolAttr is an MLIR i1
// IntegerAttr, caught by the IntegerAttr branch of CreateTflFusableOpCustomOptions
// (prepare_composite_functions_tf.cc) and sign-extended by getInt().
static FgFlexStatus NumberToBool(const FgNumber* n, int* value) {
  if (n->kind == kNumFloat) return kFgFlexWrongType;
  if (n->kind == kNumInt && (n->i == 0 || n->i == 1 || n->i == -1)) {
    *value = n->i != 0 ? 1 : 0;
    return kFgFlexOk;
  }
  if (n->kind != kNumInt && n->u <= 1) {
    *value = (int)n->u;
    return kFgFlexOk;
  }
  return kFgFlexWrongType;
}

static FgFlexStatus NumberToFloat(const FgNumber* n, double* value) {
  switch (n->kind) {
    case kNumFloat:
      *value = n->f;
      return kFgFlexOk;
    case kNumInt:
      *value = (double)n->i;
      return kFgFlexOk;
    case kNumUInt:
      *value = (double)n->u;
      return kFgFlexOk;
    case kNumBool:
    default:
      return kFgFlexWrongType;
  }
}

static FgFlexStatus FindNumber(const uint8_t* buffer, size_t length, const char* key,
                               FgNumber* n) {
  FgBuf b;
  FgRef ref;
  b.data = buffer;
  b.length = length;
  if (key == NULL) return kFgFlexMissing;
  const FgFlexStatus status = FindKey(&b, key, &ref);
  if (status != kFgFlexOk) return status;
  return ReadNumber(&b, &ref, n);
}

FgFlexStatus fg_flex_get_int(const uint8_t* buffer, size_t length, const char* key,
                             int64_t* value) {
  FgNumber n;
  const FgFlexStatus status = FindNumber(buffer, length, key, &n);
  return status != kFgFlexOk ? status : NumberToInt(&n, value);
}

FgFlexStatus fg_flex_get_bool(const uint8_t* buffer, size_t length, const char* key, int* value) {
  FgNumber n;
  const FgFlexStatus status = FindNumber(buffer, length, key, &n);
  return status != kFgFlexOk ? status : NumberToBool(&n, value);
}

FgFlexStatus fg_flex_get_float(const uint8_t* buffer, size_t length, const char* key,
                               double* value) {
  FgNumber n;
  const FgFlexStatus status = FindNumber(buffer, length, key, &n);
  return status != kFgFlexOk ? status : NumberToFloat(&n, value);
}

// Opens any vector of scalars; strings, keys, blobs, maps and non-vectors are the wrong type.
static FgFlexStatus OpenVector(const FgBuf* b, const FgRef* ref, FgVec* v) {
  const unsigned type = ref->type;
  const int typed = type == kTypeVectorInt || type == kTypeVectorUInt ||
                    type == kTypeVectorFloat || type == kTypeVectorBool;
  const int fixed = type >= kTypeVectorInt2 && type <= kTypeVectorFloat4;
  if (type != kTypeVector && !typed && !fixed) return kFgFlexWrongType;
  size_t data = 0;
  if (Indirect(b, ref->pos, ref->parent_width, &data) != kFgFlexOk) return kFgFlexMalformed;
  const size_t width = ref->byte_width;
  if (fixed) {
    const unsigned k = type - kTypeVectorInt2;  // Three element types per length, from length 2.
    const size_t size = k / 3 + 2;
    if (!FitsArray(b, data, size, width)) return kFgFlexMalformed;
    v->elements = data;
    v->width = width;
    v->size = size;
    v->untyped = 0;
    v->types = 0;
    v->element_type = k % 3 + kTypeInt;
    return kFgFlexOk;
  }
  const FgFlexStatus status = OpenSizedVector(b, data, width, type == kTypeVector, v);
  if (status != kFgFlexOk) return status;
  if (typed) v->element_type = type == kTypeVectorBool ? kTypeBool : type - kTypeVectorInt + kTypeInt;
  return kFgFlexOk;
}

// Shared body of the vector getters: `as_int` selects the element conversion.
static FgFlexStatus GetVector(const uint8_t* buffer, size_t length, const char* key, int as_int,
                              void* values, size_t capacity, size_t* count) {
  FgBuf b;
  FgRef ref;
  FgVec v;
  b.data = buffer;
  b.length = length;
  if (key == NULL) return kFgFlexMissing;
  FgFlexStatus status = FindKey(&b, key, &ref);
  if (status != kFgFlexOk) return status;
  status = OpenVector(&b, &ref, &v);
  if (status != kFgFlexOk) return status;
  // Pass 0 validates every element, pass 1 copies: nothing is written unless the result is Ok.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < v.size && (pass == 0 || i < capacity); ++i) {
      const FgRef element = ElementRef(&b, &v, i);
      FgNumber n;
      int64_t as_int64 = 0;
      double as_double = 0.0;
      status = ReadNumber(&b, &element, &n);
      if (status == kFgFlexOk) {
        status = as_int ? NumberToInt(&n, &as_int64) : NumberToFloat(&n, &as_double);
      }
      if (status != kFgFlexOk) return status;
      if (pass == 1 && as_int) ((int64_t*)values)[i] = as_int64;
      if (pass == 1 && !as_int) ((double*)values)[i] = as_double;
    }
  }
  *count = v.size;
  return kFgFlexOk;
}

FgFlexStatus fg_flex_get_int_vector(const uint8_t* buffer, size_t length, const char* key,
                                    int64_t* values, size_t capacity, size_t* count) {
  return GetVector(buffer, length, key, 1, values, capacity, count);
}

FgFlexStatus fg_flex_get_float_vector(const uint8_t* buffer, size_t length, const char* key,
                                      double* values, size_t capacity, size_t* count) {
  return GetVector(buffer, length, key, 0, values, capacity, count);
}

const char* fg_flex_status_string(FgFlexStatus status) {
  switch (status) {
    case kFgFlexOk:
      return "ok";
    case kFgFlexMalformed:
      return "malformed";
    case kFgFlexMissing:
      return "missing";
    case kFgFlexWrongType:
      return "wrong type";
    default:
      return "unknown status";
  }
}
