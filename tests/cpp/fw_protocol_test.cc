// Frame parser of the benchmark serial protocol (firmware/protocol/fw_protocol.h), on the host.
// The command server and the Python codec are tested in tests/test_serial_protocol.py.

#include "fw_protocol.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace {

using Bytes = std::vector<uint8_t>;

Bytes Encode(uint8_t type, uint8_t seq, const Bytes& payload) {
  Bytes out(kFwMaxFrameBytes);
  const size_t n =
      fw_frame_encode(type, seq, payload.data(), payload.size(), out.data(), out.size());
  out.resize(n);
  return out;
}

struct Event {
  FwParseResult result;
  uint8_t type;
  uint8_t seq;
  uint8_t error;
  Bytes payload;
};

std::vector<Event> Feed(FwParser* parser, const Bytes& bytes) {
  std::vector<Event> events;
  for (uint8_t byte : bytes) {
    const FwParseResult result = fw_parser_feed(parser, byte);
    if (result == kFwParseNone) continue;
    const FwFrame& frame = parser->frame;
    events.push_back({result, frame.type, frame.seq, parser->error,
                      result == kFwParseFrame
                          ? Bytes(frame.payload, frame.payload + frame.length)
                          : Bytes()});
  }
  return events;
}

class FwProtocol : public ::testing::Test {
 protected:
  void SetUp() override { fw_parser_init(&parser_); }
  FwParser parser_;
};

TEST(FwCrc16, CheckValue) {
  // The catalogued check value of CRC-16/CCITT-FALSE for "123456789".
  const uint8_t text[] = {'1', '2', '3', '4', '5', '6', '7', '8', '9'};
  EXPECT_EQ(fw_crc16(0xFFFF, text, sizeof(text)), 0x29B1);
}

TEST(FwFrameEncode, LayoutIsHeaderPayloadCrc) {
  const Bytes frame = Encode(0x81, 0x22, {0xAA, 0xBB});
  ASSERT_EQ(frame.size(), 10u);
  EXPECT_EQ(frame[0], kFwSync0);
  EXPECT_EQ(frame[1], kFwSync1);
  EXPECT_EQ(frame[2], 0x81);
  EXPECT_EQ(frame[3], 0x22);
  EXPECT_EQ(frame[4], 2);  // length, little-endian
  EXPECT_EQ(frame[5], 0);
  const uint16_t crc = fw_crc16(0xFFFF, frame.data() + 2, 6);
  EXPECT_EQ(frame[8], crc & 0xFF);
  EXPECT_EQ(frame[9], crc >> 8);
}

TEST(FwFrameEncode, RefusesOversizePayload) {
  Bytes payload(kFwMaxPayload + 1);
  Bytes out(kFwMaxFrameBytes + 16);
  EXPECT_EQ(fw_frame_encode(1, 1, payload.data(), payload.size(), out.data(), out.size()), 0u);
}

TEST_F(FwProtocol, ParsesFramesOfEverySize) {
  for (size_t size : {0u, 1u, 2u, 255u, 256u, static_cast<unsigned>(kFwMaxPayload)}) {
    Bytes payload(size);
    for (size_t i = 0; i < size; ++i) payload[i] = static_cast<uint8_t>(i * 31 + 7);
    const auto events = Feed(&parser_, Encode(0x05, 9, payload));
    ASSERT_EQ(events.size(), 1u) << size;
    EXPECT_EQ(events[0].result, kFwParseFrame);
    EXPECT_EQ(events[0].payload, payload);
  }
}

TEST_F(FwProtocol, CorruptCrcIsRejectedAndNextFrameParses) {
  Bytes stream = Encode(0x01, 1, {1, 2, 3});
  stream[7] ^= 0x01;  // a payload bit
  const Bytes good = Encode(0x01, 2, {4});
  stream.insert(stream.end(), good.begin(), good.end());
  const auto events = Feed(&parser_, stream);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].result, kFwParseError);
  EXPECT_EQ(events[0].error, kFwErrBadCrc);
  EXPECT_EQ(events[1].result, kFwParseFrame);
  EXPECT_EQ(events[1].seq, 2);
}

TEST_F(FwProtocol, TruncatedFrameTimesOut) {
  const Bytes frame = Encode(0x01, 3, {1, 2, 3, 4, 5, 6});
  EXPECT_TRUE(Feed(&parser_, Bytes(frame.begin(), frame.begin() + 8)).empty());
  EXPECT_TRUE(fw_parser_in_frame(&parser_));
  EXPECT_EQ(fw_parser_timeout(&parser_), kFwParseError);
  EXPECT_EQ(parser_.error, kFwErrTimeout);
  EXPECT_FALSE(fw_parser_in_frame(&parser_));
  EXPECT_EQ(Feed(&parser_, frame).size(), 1u);
}

TEST_F(FwProtocol, TimeoutBetweenFramesIsNotAnError) {
  EXPECT_EQ(fw_parser_timeout(&parser_), kFwParseNone);
  Feed(&parser_, {kFwSync0});  // half a sync pair is not a frame yet
  EXPECT_EQ(fw_parser_timeout(&parser_), kFwParseNone);
}

TEST_F(FwProtocol, OversizeLengthIsRejectedBeforeThePayload) {
  const uint16_t length = kFwMaxPayload + 1;
  const Bytes header = {kFwSync0, kFwSync1, 0x01, 4, static_cast<uint8_t>(length & 0xFF),
                        static_cast<uint8_t>(length >> 8)};
  const auto events = Feed(&parser_, header);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].error, kFwErrOversize);
  EXPECT_FALSE(fw_parser_in_frame(&parser_));
  EXPECT_EQ(Feed(&parser_, Encode(0x01, 5, {})).size(), 1u);
}

TEST_F(FwProtocol, GarbageBetweenFramesIsSkipped) {
  Bytes stream = {0x00, 0xFF, kFwSync0, kFwSync0};  // A5 A5 5A still syncs on the second A5
  const Bytes a = Encode(0x01, 1, {0xA5, 0x5A});    // sync bytes inside a payload are data
  stream.insert(stream.end(), a.begin(), a.end());
  stream.insert(stream.end(), {kFwSync1, 0x42, kFwSync0, 0x13});
  const Bytes b = Encode(0x01, 2, {});
  stream.insert(stream.end(), b.begin(), b.end());
  const auto events = Feed(&parser_, stream);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].payload, Bytes({0xA5, 0x5A}));
  EXPECT_EQ(events[1].seq, 2);
}

}  // namespace
