#include "fw_protocol.h"

enum {
  kStateSync0 = 0,
  kStateSync1,
  kStateType,
  kStateSeq,
  kStateLength0,
  kStateLength1,
  kStatePayload,
  kStateCrc0,
  kStateCrc1,
};

uint16_t fw_crc16(uint16_t crc, const uint8_t* data, size_t n) {
  /* Bitwise rather than table-driven: 40 bytes of code instead of 512 bytes of table, and the
   * link is far slower than this loop. */
  for (size_t i = 0; i < n; ++i) {
    crc ^= (uint16_t)(data[i] << 8);
    for (int bit = 0; bit < 8; ++bit) {
      const uint32_t shifted = (uint32_t)crc << 1;
      crc = (uint16_t)((crc & 0x8000u) ? shifted ^ 0x1021u : shifted);
    }
  }
  return crc;
}

static uint16_t crc16_byte(uint16_t crc, uint8_t byte) { return fw_crc16(crc, &byte, 1); }

void fw_parser_init(FwParser* parser) {
  parser->state = kStateSync0;
  parser->received = 0;
  parser->crc = 0xFFFF;
  parser->crc_rx = 0;
  parser->error = 0;
  parser->frame.type = 0;
  parser->frame.seq = 0;
  parser->frame.length = 0;
}

static FwParseResult reject(FwParser* parser, FwError error) {
  parser->error = (uint8_t)error;
  parser->state = kStateSync0;
  return kFwParseError;
}

/* Handles the header states; returns the next state. */
static int feed_header(FwParser* parser, uint8_t byte) {
  switch (parser->state) {
    case kStateSync0:
      return byte == kFwSync0 ? kStateSync1 : kStateSync0;
    case kStateSync1:
      if (byte == kFwSync1) {
        parser->crc = 0xFFFF;
        return kStateType;
      }
      /* A5 A5 5A must still sync on the second A5. */
      return byte == kFwSync0 ? kStateSync1 : kStateSync0;
    case kStateType:
      parser->frame.type = byte;
      return kStateSeq;
    case kStateSeq:
      parser->frame.seq = byte;
      return kStateLength0;
    case kStateLength0:
      parser->frame.length = byte;
      return kStateLength1;
    default: /* kStateLength1 */
      parser->frame.length = (uint16_t)(parser->frame.length | (byte << 8));
      parser->received = 0;
      return parser->frame.length == 0 ? kStateCrc0 : kStatePayload;
  }
}

FwParseResult fw_parser_feed(FwParser* parser, uint8_t byte) {
  switch (parser->state) {
    case kStatePayload:
      parser->crc = crc16_byte(parser->crc, byte);
      parser->frame.payload[parser->received++] = byte;
      if (parser->received == parser->frame.length) parser->state = kStateCrc0;
      return kFwParseNone;
    case kStateCrc0:
      parser->crc_rx = byte;
      parser->state = kStateCrc1;
      return kFwParseNone;
    case kStateCrc1:
      parser->crc_rx = (uint16_t)(parser->crc_rx | (byte << 8));
      parser->state = kStateSync0;
      if (parser->crc_rx != parser->crc) return reject(parser, kFwErrBadCrc);
      return kFwParseFrame;
    default:
      break;
  }
  if (parser->state >= kStateType) parser->crc = crc16_byte(parser->crc, byte);
  parser->state = feed_header(parser, byte);
  /* Rejecting an oversize length at once, before its "payload" arrives, keeps a corrupted
   * length byte from swallowing the frames that follow. */
  if (parser->state == kStatePayload && parser->frame.length > kFwMaxPayload) {
    return reject(parser, kFwErrOversize);
  }
  return kFwParseNone;
}

int fw_parser_in_frame(const FwParser* parser) { return parser->state >= kStateType; }

FwParseResult fw_parser_timeout(FwParser* parser) {
  if (!fw_parser_in_frame(parser)) {
    parser->state = kStateSync0; /* a lone sync0 byte is just forgotten */
    return kFwParseNone;
  }
  return reject(parser, kFwErrTimeout);
}

static void put_header(uint8_t* header, uint8_t type, uint8_t seq, size_t n) {
  header[0] = kFwSync0;
  header[1] = kFwSync1;
  header[2] = type;
  header[3] = seq;
  header[4] = (uint8_t)(n & 0xFF);
  header[5] = (uint8_t)(n >> 8);
}

int fw_frame_write(FwWriteFn write, void* ctx, uint8_t type, uint8_t seq, const uint8_t* payload,
                   size_t n) {
  if (n > kFwMaxPayload) return -1;
  uint8_t header[kFwHeaderBytes];
  put_header(header, type, seq, n);
  uint16_t crc = fw_crc16(0xFFFF, header + 2, kFwHeaderBytes - 2);
  crc = fw_crc16(crc, payload, n);
  const uint8_t trailer[kFwCrcBytes] = {(uint8_t)(crc & 0xFF), (uint8_t)(crc >> 8)};
  write(ctx, header, kFwHeaderBytes);
  if (n > 0) write(ctx, payload, n);
  write(ctx, trailer, kFwCrcBytes);
  return 0;
}

size_t fw_frame_encode(uint8_t type, uint8_t seq, const uint8_t* payload, size_t n, uint8_t* out,
                       size_t cap) {
  const size_t size = kFwHeaderBytes + n + kFwCrcBytes;
  if (n > kFwMaxPayload || cap < size) return 0;
  put_header(out, type, seq, n);
  for (size_t i = 0; i < n; ++i) out[kFwHeaderBytes + i] = payload[i];
  const uint16_t crc = fw_crc16(0xFFFF, out + 2, kFwHeaderBytes - 2 + n);
  out[kFwHeaderBytes + n] = (uint8_t)(crc & 0xFF);
  out[kFwHeaderBytes + n + 1] = (uint8_t)(crc >> 8);
  return size;
}
