#include "fw_server.h"

#include "fw_model.h"

/* Payload layouts are little-endian and packed; firmware/README.md and
 * fusegen/bench/protocol.py describe the same bytes. */
enum {
  kDescribeFixedBytes = 64,
  kMaxStringBytes = 63,
  kOffsetBytes = 4,
  kReadRequestBytes = 6,  /* u32 offset, u16 length */
  kRunReplyBytes = 16,    /* i32 status, u64 count, u32 stack used */
  kErrorPayloadBytes = 4, /* u8 code, u8 request type, u16 detail */
};

static uint8_t* put_u16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  return p + 2;
}

static uint8_t* put_u32(uint8_t* p, uint32_t v) {
  p = put_u16(p, (uint16_t)v);
  return put_u16(p, (uint16_t)(v >> 16));
}

static uint8_t* put_u64(uint8_t* p, uint64_t v) {
  p = put_u32(p, (uint32_t)v);
  return put_u32(p, (uint32_t)(v >> 32));
}

static uint8_t* put_string(uint8_t* p, const char* s) {
  uint8_t n = 0;
  while (s != 0 && s[n] != '\0' && n < kMaxStringBytes) {
    p[1 + n] = (uint8_t)s[n];
    ++n;
  }
  p[0] = n;
  return p + 1 + n;
}

static uint16_t get_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t* p) {
  return (uint32_t)get_u16(p) | ((uint32_t)get_u16(p + 2) << 16);
}

static void reply(FwServer* server, uint8_t type, uint8_t seq, const uint8_t* payload,
                  size_t n) {
  fw_frame_write(server->port->write, server->port->write_ctx, type, seq, payload, n);
}

static void reply_ok(FwServer* server, const FwFrame* request, size_t n) {
  reply(server, (uint8_t)(request->type | kFwResponseFlag), request->seq, server->response, n);
}

static void reply_error(FwServer* server, uint8_t type, uint8_t seq, FwError code,
                        uint16_t detail) {
  uint8_t payload[kErrorPayloadBytes] = {(uint8_t)code, type};
  put_u16(payload + 2, detail);
  reply(server, kFwTypeError, seq, payload, sizeof(payload));
}

/* Nonzero when the model's tensors fit the firmware's buffers. */
static int model_fits(const FwServer* server) {
  const FwModelInfo* info = fw_model_info();
  return info->input_bytes >= 0 && info->output_bytes >= 0 &&
         (uint32_t)info->input_bytes <= server->input_capacity &&
         (uint32_t)info->output_bytes <= server->output_capacity;
}

static void handle_describe(FwServer* server, const FwFrame* request) {
  const FwModelInfo* model = fw_model_info();
  const FwDeviceInfo* device = &server->port->device;
  uint8_t* p = server->response;
  p = put_u16(p, kFwProtocolVersion);
  p = put_u16(p, kFwMaxPayload);
  *p++ = model->dtype;
  *p++ = device->counter_unit;
  p = put_u16(p, device->counter_resolution);
  p = put_u32(p, (uint32_t)model->input_bytes);
  p = put_u32(p, (uint32_t)model->output_bytes);
  p = put_u32(p, (uint32_t)model->input_elems);
  p = put_u32(p, (uint32_t)model->output_elems);
  p = put_u32(p, model->model_bytes);
  p = put_u32(p, model->arena_bytes);
  p = put_u32(p, server->input_capacity);
  p = put_u32(p, server->output_capacity);
  p = put_u32(p, device->flash_used);
  p = put_u32(p, device->flash_size);
  p = put_u32(p, device->ram_used);
  p = put_u32(p, device->ram_size);
  p = put_u32(p, device->stack_size);
  p = put_u32(p, device->cpu_hz);
  p = put_string(p, device->firmware_version);
  p = put_string(p, model->name);
  p = put_string(p, device->board_name);
  reply_ok(server, request, (size_t)(p - server->response));
}

static void handle_load_input(FwServer* server, const FwFrame* request) {
  if (request->length < kOffsetBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kOffsetBytes);
    return;
  }
  const uint32_t offset = get_u32(request->payload);
  const uint32_t n = request->length - kOffsetBytes;
  const uint32_t size = (uint32_t)fw_model_info()->input_bytes;
  if (offset > size || n > size - offset) {
    reply_error(server, request->type, request->seq, kFwErrOutOfRange, 0);
    return;
  }
  for (uint32_t i = 0; i < n; ++i) server->input[offset + i] = request->payload[kOffsetBytes + i];
  put_u32(server->response, offset + n);
  reply_ok(server, request, kOffsetBytes);
}

static void handle_run(FwServer* server, const FwFrame* request) {
  if (server->run_reply_valid && server->run_reply_seq == request->seq) {
    reply(server, (uint8_t)(request->type | kFwResponseFlag), request->seq, server->run_reply,
          kRunReplyBytes);
    return;
  }
  const FwServerPort* port = server->port;
  port->counter_reset();
  const int status = fw_model_run(server->input, server->output);
  const uint64_t count = port->counter_read();
  const uint32_t stack = port->stack_used != 0 ? port->stack_used() : 0;
  uint8_t* p = put_u32(server->run_reply, (uint32_t)status);
  p = put_u64(p, count);
  put_u32(p, stack);
  server->run_reply_valid = 1;
  server->run_reply_seq = request->seq;
  reply(server, (uint8_t)(request->type | kFwResponseFlag), request->seq, server->run_reply,
        kRunReplyBytes);
}

static void handle_read_output(FwServer* server, const FwFrame* request) {
  if (request->length != kReadRequestBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kReadRequestBytes);
    return;
  }
  const uint32_t offset = get_u32(request->payload);
  const uint32_t n = get_u16(request->payload + kOffsetBytes);
  const uint32_t size = (uint32_t)fw_model_info()->output_bytes;
  if (n > kFwMaxPayload - kOffsetBytes || offset > size || n > size - offset) {
    reply_error(server, request->type, request->seq, kFwErrOutOfRange, 0);
    return;
  }
  uint8_t* p = put_u32(server->response, offset);
  for (uint32_t i = 0; i < n; ++i) p[i] = server->output[offset + i];
  reply_ok(server, request, kOffsetBytes + n);
}

static int expect_empty(FwServer* server, const FwFrame* request) {
  if (request->length == 0) return 1;
  reply_error(server, request->type, request->seq, kFwErrBadPayload, 0);
  return 0;
}

static int needs_buffers(uint8_t type) {
  return type == kFwCmdLoadInput || type == kFwCmdRun || type == kFwCmdReadOutput;
}

static void handle_frame(FwServer* server, const FwFrame* request) {
  if (request->type != kFwCmdRun) server->run_reply_valid = 0;
  if (needs_buffers(request->type) && !model_fits(server)) {
    reply_error(server, request->type, request->seq, kFwErrModelTooLarge, 0);
    return;
  }
  switch (request->type) {
    case kFwCmdPing:
      for (uint16_t i = 0; i < request->length; ++i) server->response[i] = request->payload[i];
      reply_ok(server, request, request->length);
      return;
    case kFwCmdDescribe:
      if (expect_empty(server, request)) handle_describe(server, request);
      return;
    case kFwCmdLoadInput:
      handle_load_input(server, request);
      return;
    case kFwCmdRun:
      if (expect_empty(server, request)) handle_run(server, request);
      return;
    case kFwCmdReadOutput:
      handle_read_output(server, request);
      return;
    case kFwCmdResetState:
      if (!expect_empty(server, request)) return;
      fw_model_reset();
      reply_ok(server, request, 0);
      return;
    case kFwCmdExit:
      if (!expect_empty(server, request)) return;
      reply_ok(server, request, 0);
      server->exit_requested = 1;
      return;
    default:
      reply_error(server, request->type, request->seq, kFwErrUnknownCommand, 0);
      return;
  }
}

static void report_rejected(FwServer* server) {
  const FwParser* parser = &server->parser;
  const uint16_t detail = parser->error == kFwErrOversize ? parser->frame.length : 0;
  server->run_reply_valid = 0;
  reply_error(server, parser->frame.type, parser->frame.seq, (FwError)parser->error, detail);
}

void fw_server_init(FwServer* server, const FwServerPort* port, void* input,
                    uint32_t input_capacity, void* output, uint32_t output_capacity) {
  fw_parser_init(&server->parser);
  server->port = port;
  server->input = (uint8_t*)input;
  server->input_capacity = input_capacity;
  server->output = (uint8_t*)output;
  server->output_capacity = output_capacity;
  server->exit_requested = 0;
  server->run_reply_valid = 0;
  server->run_reply_seq = 0;
}

void fw_server_feed(FwServer* server, uint8_t byte) {
  switch (fw_parser_feed(&server->parser, byte)) {
    case kFwParseFrame:
      handle_frame(server, &server->parser.frame);
      return;
    case kFwParseError:
      report_rejected(server);
      return;
    default:
      return;
  }
}

void fw_server_timeout(FwServer* server) {
  if (fw_parser_timeout(&server->parser) == kFwParseError) report_rejected(server);
}

int fw_server_exit_requested(const FwServer* server) { return server->exit_requested; }
