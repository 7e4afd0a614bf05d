// fg_flexbuffer.h from C++, as a TFLM kernel's Prepare uses it. The Python round trips live in
// tests/test_options_roundtrip.py; these tests need no Python and, in the build/asan tree, run
// every truncation and every single-byte corruption of a converter-made buffer under
// AddressSanitizer, each in a heap block of exactly its size.

#include "tflm_kernels/options/fg_flexbuffer.h"

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

namespace {

// {"a": 1}, derived by hand from the FlexBuffers layout (flatbuffers.flexbuffers.Dumps writes the
// same bytes):
//   0: 'a' '\0'        the key
//   2: 1               keys vector: size
//   3: 3               keys vector: offset back to the key at 0
//   4: 1               map: offset back to the keys vector at 3
//   5: 1               map: keys vector byte width
//   6: 1               map: size
//   7: 1               value 0: the int 1 (inline, map width 1)
//   8: 0x04            type 0: INT << 2 | width 1
//   9: 2               root: offset back to the map's values at 7
//  10: 0x24            root type: MAP << 2 | width 1
//  11: 1               root byte width
const std::vector<uint8_t> kOneKey = {0x61, 0x00, 0x01, 0x03, 0x01, 0x01,
                                      0x01, 0x01, 0x04, 0x02, 0x24, 0x01};

// Custom options that TF 2.21's converter wrote for a composite with attrs alpha {f: 0.5},
// return_sequences {b: true}, units {i: 7} (see test_converter_options in
// tests/test_options_roundtrip.py): slots of 4 bytes; alpha FLOAT 0x3f000000, return_sequences
// INT -1 (the converter's encoding of true), units INT 7.
const std::vector<uint8_t> kConverterOptions = {
    0x61, 0x6c, 0x70, 0x68, 0x61, 0x00, 0x72, 0x65, 0x74, 0x75, 0x72, 0x6e, 0x5f, 0x73,
    0x65, 0x71, 0x75, 0x65, 0x6e, 0x63, 0x65, 0x73, 0x00, 0x75, 0x6e, 0x69, 0x74, 0x73,
    0x00, 0x03, 0x1e, 0x19, 0x09, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0xff, 0xff, 0xff, 0xff,
    0x07, 0x00, 0x00, 0x00, 0x0e, 0x06, 0x06, 0x0f, 0x26, 0x01};

const char* const kKeys[] = {"a", "alpha", "return_sequences", "units", "unit", "z", ""};

bool IsStatus(FgFlexStatus s) {
  return s == kFgFlexOk || s == kFgFlexMalformed || s == kFgFlexMissing || s == kFgFlexWrongType;
}

// Runs every getter on a heap copy of exactly `bytes.size()` bytes (one byte is allocated for an
// empty buffer, but the reader is told 0).
void ProbeAllKeys(const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  copy.shrink_to_fit();
  const uint8_t* data = copy.empty() ? nullptr : copy.data();
  for (const char* key : kKeys) {
    int64_t i = 0;
    int b = 0;
    double f = 0.0;
    int64_t iv[4];
    double fv[4];
    size_t count = 0;
    EXPECT_TRUE(IsStatus(fg_flex_get_int(data, copy.size(), key, &i)));
    EXPECT_TRUE(IsStatus(fg_flex_get_bool(data, copy.size(), key, &b)));
    EXPECT_TRUE(IsStatus(fg_flex_get_float(data, copy.size(), key, &f)));
    EXPECT_TRUE(IsStatus(fg_flex_get_int_vector(data, copy.size(), key, iv, 4, &count)));
    EXPECT_TRUE(IsStatus(fg_flex_get_float_vector(data, copy.size(), key, fv, 4, &count)));
  }
}

TEST(FgFlexbuffer, ReadsHandDerivedMap) {
  int64_t value = 0;
  ASSERT_EQ(fg_flex_get_int(kOneKey.data(), kOneKey.size(), "a", &value), kFgFlexOk);
  EXPECT_EQ(value, 1);
  int flag = 0;
  ASSERT_EQ(fg_flex_get_bool(kOneKey.data(), kOneKey.size(), "a", &flag), kFgFlexOk);
  EXPECT_EQ(flag, 1);
  double real = 0.0;
  ASSERT_EQ(fg_flex_get_float(kOneKey.data(), kOneKey.size(), "a", &real), kFgFlexOk);
  EXPECT_EQ(real, 1.0);
}

TEST(FgFlexbuffer, ReadsConverterOptions) {
  const uint8_t* data = kConverterOptions.data();
  const size_t size = kConverterOptions.size();
  int64_t units = 0;
  double alpha = 0.0;
  int return_sequences = 0;
  ASSERT_EQ(fg_flex_get_int(data, size, "units", &units), kFgFlexOk);
  ASSERT_EQ(fg_flex_get_float(data, size, "alpha", &alpha), kFgFlexOk);
  ASSERT_EQ(fg_flex_get_bool(data, size, "return_sequences", &return_sequences), kFgFlexOk);
  EXPECT_EQ(units, 7);
  EXPECT_EQ(alpha, 0.5);
  EXPECT_EQ(return_sequences, 1);
}

TEST(FgFlexbuffer, OutputsUntouchedUnlessOk) {
  int64_t value = 42;
  EXPECT_EQ(fg_flex_get_int(kOneKey.data(), kOneKey.size(), "b", &value), kFgFlexMissing);
  EXPECT_EQ(fg_flex_get_int(kOneKey.data(), kOneKey.size() - 1, "a", &value), kFgFlexMalformed);
  EXPECT_EQ(fg_flex_get_int(nullptr, 0, "a", &value), kFgFlexMalformed);
  double real = 2.5;
  EXPECT_EQ(fg_flex_get_float(kConverterOptions.data(), kConverterOptions.size(),
                              "return_sequences_x", &real),
            kFgFlexMissing);
  int flag = 3;
  // units is 7: an int is only a bool when it is 0, 1 or -1.
  EXPECT_EQ(fg_flex_get_bool(kConverterOptions.data(), kConverterOptions.size(), "units", &flag),
            kFgFlexWrongType);
  EXPECT_EQ(value, 42);
  EXPECT_EQ(real, 2.5);
  EXPECT_EQ(flag, 3);
}

TEST(FgFlexbuffer, EveryTruncationIsSafe) {
  for (const std::vector<uint8_t>* buffer : {&kOneKey, &kConverterOptions}) {
    for (size_t n = 0; n < buffer->size(); ++n) {
      ProbeAllKeys(std::vector<uint8_t>(buffer->begin(), buffer->begin() + n));
      ProbeAllKeys(std::vector<uint8_t>(buffer->begin() + n, buffer->end()));
    }
  }
}

// In kOneKey this includes overwriting the key's NUL: the key then runs to the end of the buffer.
TEST(FgFlexbuffer, EverySingleByteValueAtEveryPositionIsSafe) {
  for (const std::vector<uint8_t>* buffer : {&kOneKey, &kConverterOptions}) {
    std::vector<uint8_t> bytes = *buffer;
    for (size_t pos = 0; pos < bytes.size(); ++pos) {
      for (int v = 0; v < 256; ++v) {
        bytes[pos] = static_cast<uint8_t>(v);
        ProbeAllKeys(bytes);
      }
      bytes[pos] = (*buffer)[pos];
    }
  }
}

TEST(FgFlexbuffer, UnterminatedKeyIsMalformed) {
  std::vector<uint8_t> bytes = kOneKey;
  bytes[1] = 'b';  // No NUL remains anywhere in the buffer.
  int64_t value = 0;
  EXPECT_EQ(fg_flex_get_int(bytes.data(), bytes.size(), "a", &value), kFgFlexMalformed);
}

TEST(FgFlexbuffer, StatusStrings) {
  EXPECT_STREQ(fg_flex_status_string(kFgFlexOk), "ok");
  EXPECT_STREQ(fg_flex_status_string(kFgFlexMalformed), "malformed");
  EXPECT_STREQ(fg_flex_status_string(kFgFlexMissing), "missing");
  EXPECT_STREQ(fg_flex_status_string(kFgFlexWrongType), "wrong type");
}

}  // namespace
