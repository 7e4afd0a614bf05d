/* Framing of the fusegen benchmark serial protocol (see firmware/README.md).
 *
 * Frame: A5 5A | type u8 | seq u8 | length u16 LE | payload[length] | crc u16 LE
 * The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over
 * type, seq, length and payload. Portable C99: no board or libc dependency beyond <stdint.h>
 * and <stddef.h>, so the same parser runs on the device, on the host and under a fuzzer.
 * fusegen/bench/protocol.py is the Python twin; tests compare the constants below with it. */
#ifndef FIRMWARE_PROTOCOL_FW_PROTOCOL_H_
#define FIRMWARE_PROTOCOL_FW_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  kFwProtocolVersion = 2,
  kFwSync0 = 0xA5,
  kFwSync1 = 0x5A,
  kFwHeaderBytes = 6, /* sync0, sync1, type, seq, length (2) */
  kFwCrcBytes = 2,
  kFwMaxPayload = 1024,
  kFwMaxOpMarks = 64, /* fw_op_mark calls kept per inference; later ones are counted only */
  kFwMaxFrameBytes = kFwHeaderBytes + kFwMaxPayload + kFwCrcBytes,
};

/* Frame types. A successful response has type (command | kFwResponseFlag) and the request's
 * sequence number; a failure is a kFwTypeError frame whose payload is FwErrorPayload. */
typedef enum {
  kFwCmdPing = 0x01,
  kFwCmdDescribe = 0x02,
  kFwCmdLoadInput = 0x03,
  kFwCmdRun = 0x04,
  kFwCmdReadOutput = 0x05,
  kFwCmdResetState = 0x06,
  kFwCmdExit = 0x07,
  kFwCmdHello = 0x08,  /* opens a session: the host's nonce binds RUN and the writes to it */
  kFwCmdStatus = 0x09, /* session, inferences run, who ran the last one; never busy-waits */
  kFwCmdOpCounts = 0x0A, /* the counter at each fw_op_mark of the last inference (per-op time) */
} FwCommand;

enum {
  kFwResponseFlag = 0x80,
  kFwTypeError = 0xFF,
};

/* Error codes. The first three are transport errors: the host may resend the same request.
 * The rest answer a well-formed frame and resending will not help. */
typedef enum {
  kFwErrBadCrc = 1,
  kFwErrOversize = 2,
  kFwErrTimeout = 3,
  kFwErrUnknownCommand = 4,
  kFwErrBadPayload = 5,
  kFwErrOutOfRange = 6,
  kFwErrModelTooLarge = 7,
  kFwErrSession = 8,  /* the request names a session other than the one the last HELLO opened */
  kFwErrSequence = 9, /* the request names an inference other than the next (or, to read, the
                       * last) one; detail is the low 16 bits of the device's inference count */
} FwError;

/* Updates a CRC-16/CCITT-FALSE with n bytes; start with 0xFFFF. */
uint16_t fw_crc16(uint16_t crc, const uint8_t* data, size_t n);

typedef struct {
  uint8_t type;
  uint8_t seq;
  uint16_t length;
  uint8_t payload[kFwMaxPayload];
} FwFrame;

typedef enum {
  kFwParseNone = 0,  /* byte consumed, nothing complete yet */
  kFwParseFrame = 1, /* parser->frame holds a frame with a valid CRC */
  kFwParseError = 2, /* a frame was rejected: parser->error says why */
} FwParseResult;

typedef struct {
  int state;
  uint16_t received; /* payload bytes received so far */
  uint16_t crc;      /* running CRC of the frame being received */
  uint16_t crc_rx;   /* CRC field as received */
  uint8_t error;     /* FwError of the last kFwParseError */
  FwFrame frame;     /* type and seq are valid even for a rejected frame */
} FwParser;

void fw_parser_init(FwParser* parser);

/* Consumes one byte. Bytes outside a frame are skipped until the next sync pair, so the parser
 * resynchronises after garbage, a bad CRC or an oversize length. */
FwParseResult fw_parser_feed(FwParser* parser, uint8_t byte);

/* Tells the parser the line has been idle too long. Abandons a partial frame, returning
 * kFwParseError with error kFwErrTimeout; returns kFwParseNone between frames. */
FwParseResult fw_parser_timeout(FwParser* parser);

/* Nonzero while a frame has been started (sync seen) but not finished. */
int fw_parser_in_frame(const FwParser* parser);

typedef void (*FwWriteFn)(void* ctx, const uint8_t* data, size_t n);

/* Writes one frame through write() without a frame-sized buffer. Returns 0, or -1 if n is more
 * than kFwMaxPayload. */
int fw_frame_write(FwWriteFn write, void* ctx, uint8_t type, uint8_t seq, const uint8_t* payload,
                   size_t n);

/* Encodes one frame into out. Returns the frame size, or 0 if n > kFwMaxPayload or cap is too
 * small. */
size_t fw_frame_encode(uint8_t type, uint8_t seq, const uint8_t* payload, size_t n, uint8_t* out,
                       size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_PROTOCOL_FW_PROTOCOL_H_ */
