#include "fw_server.h"

#include "fw_model.h"

/* Payload layouts are little-endian and packed; firmware/README.md and
 * fusegen/bench/protocol.py describe the same bytes. */
enum {
  kDescribeFixedBytes = 64,
  kMaxStringBytes = 63,
  kU32 = 4,
  kHelloBytes = 8,       /* u32 nonce, u32 owner */
  kStatusBytes = 12,     /* u32 session, u32 run_count, u32 run_owner */
  kLoadHeaderBytes = 12, /* u32 session, u32 run, u32 offset; then the data */
  kLoadReplyBytes = 12,  /* u32 run, u32 offset, u32 length */
  kRunRequestBytes = 8,  /* u32 session, u32 run */
  kRunReplyBytes = 20,   /* u32 run, i32 status, u64 count, u32 stack used */
  kReadRequestBytes = 10, /* u32 run, u32 offset, u16 length */
  kReadHeaderBytes = 8,  /* u32 run, u32 offset; then the data */
  kResetRequestBytes = 8, /* u32 session, u32 run */
  kErrorPayloadBytes = 4, /* u8 code, u8 request type, u16 detail */
  kOpCountsRequestBytes = 4, /* u32 run */
  kOpCountsHeaderBytes = 12, /* u32 run, u32 marks made, u32 marks sent; then u64 each */
};

/* The server whose RUN is inside fw_model_run, for fw_op_mark; NULL outside an inference. */
static FwServer* g_marking;

void fw_op_mark(void) {
  FwServer* server = g_marking;
  if (server == NULL) return;
  const uint64_t now = server->port->counter_read();
  if (server->op_mark_count < kFwMaxOpMarks) server->op_marks[server->op_mark_count] = now;
  ++server->op_mark_count;
}

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

static void reply_status(FwServer* server, const FwFrame* request) {
  uint8_t* p = put_u32(server->response, server->session);
  p = put_u32(p, server->run_count);
  put_u32(p, server->run_owner);
  reply_ok(server, request, kStatusBytes);
}

static void handle_hello(FwServer* server, const FwFrame* request) {
  const uint32_t nonce = request->length == kHelloBytes ? get_u32(request->payload) : 0;
  if (nonce == 0) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kHelloBytes);
    return;
  }
  server->session = nonce;
  server->session_owner = get_u32(request->payload + kU32);
  reply_status(server, request);
}

/* Checks the session and inference index of a state-changing request, answering a mismatch
 * with an error. expected is the index the request must name. */
static int check_position(FwServer* server, const FwFrame* request, uint32_t expected) {
  if (server->session == 0 || get_u32(request->payload) != server->session) {
    reply_error(server, request->type, request->seq, kFwErrSession, 0);
    return 0;
  }
  if (get_u32(request->payload + kU32) != expected) {
    reply_error(server, request->type, request->seq, kFwErrSequence,
                (uint16_t)server->run_count);
    return 0;
  }
  return 1;
}

static void handle_load_input(FwServer* server, const FwFrame* request) {
  if (request->length < kLoadHeaderBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kLoadHeaderBytes);
    return;
  }
  /* Input for the next inference only: a delayed copy of a chunk of an earlier input can no
   * longer overwrite the current one. */
  if (!check_position(server, request, server->run_count + 1)) return;
  const uint32_t offset = get_u32(request->payload + 2 * kU32);
  const uint32_t n = request->length - kLoadHeaderBytes;
  const uint32_t size = (uint32_t)fw_model_info()->input_bytes;
  if (offset > size || n > size - offset) {
    reply_error(server, request->type, request->seq, kFwErrOutOfRange, 0);
    return;
  }
  const uint8_t* data = request->payload + kLoadHeaderBytes;
  for (uint32_t i = 0; i < n; ++i) server->input[offset + i] = data[i];
  uint8_t* p = put_u32(server->response, server->run_count + 1);
  p = put_u32(p, offset);
  put_u32(p, n);
  reply_ok(server, request, kLoadReplyBytes);
}

static void handle_run(FwServer* server, const FwFrame* request) {
  if (request->length != kRunRequestBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kRunRequestBytes);
    return;
  }
  const uint32_t run = get_u32(request->payload + kU32);
  const int same_session = server->session != 0 && get_u32(request->payload) == server->session;
  const int ran_it = server->run_session == server->session ||
                     (server->session_owner != 0 && server->run_owner == server->session_owner);
  if (same_session && run != 0 && run == server->run_count && ran_it) {
    /* Inference run already ran for this session, or for an earlier connection of the same
     * owner: a resend after a lost response. */
    server->run_session = server->session;
    reply(server, (uint8_t)(request->type | kFwResponseFlag), request->seq, server->run_reply,
          kRunReplyBytes);
    return;
  }
  if (!check_position(server, request, server->run_count + 1)) return;
  const FwServerPort* port = server->port;
  server->op_mark_count = 0;
  g_marking = server;
  port->counter_reset();
  const int status = fw_model_run(server->input, server->output);
  const uint64_t count = port->counter_read();
  g_marking = NULL;
  const uint32_t stack = port->stack_used != 0 ? port->stack_used() : 0;
  server->run_count = run;
  server->run_session = server->session;
  server->run_owner = server->session_owner;
  uint8_t* p = put_u32(server->run_reply, run);
  p = put_u32(p, (uint32_t)status);
  p = put_u64(p, count);
  put_u32(p, stack);
  reply(server, (uint8_t)(request->type | kFwResponseFlag), request->seq, server->run_reply,
        kRunReplyBytes);
}

static void handle_read_output(FwServer* server, const FwFrame* request) {
  if (request->length != kReadRequestBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kReadRequestBytes);
    return;
  }
  const uint32_t run = get_u32(request->payload);
  const uint32_t offset = get_u32(request->payload + kU32);
  const uint32_t n = get_u16(request->payload + 2 * kU32);
  const uint32_t size = (uint32_t)fw_model_info()->output_bytes;
  /* The output buffer holds inference run_count's output; asking for another one is an error
   * rather than silently wrong data. Reading changes nothing, so it needs no session. */
  if (run != server->run_count) {
    reply_error(server, request->type, request->seq, kFwErrSequence,
                (uint16_t)server->run_count);
    return;
  }
  if (n > kFwMaxPayload - kReadHeaderBytes || offset > size || n > size - offset) {
    reply_error(server, request->type, request->seq, kFwErrOutOfRange, 0);
    return;
  }
  uint8_t* p = put_u32(server->response, run);
  p = put_u32(p, offset);
  for (uint32_t i = 0; i < n; ++i) p[i] = server->output[offset + i];
  reply_ok(server, request, kReadHeaderBytes + n);
}

static void handle_op_counts(FwServer* server, const FwFrame* request) {
  if (request->length != kOpCountsRequestBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kOpCountsRequestBytes);
    return;
  }
  const uint32_t run = get_u32(request->payload);
  if (run != server->run_count) {
    reply_error(server, request->type, request->seq, kFwErrSequence,
                (uint16_t)server->run_count);
    return;
  }
  const uint32_t made = server->op_mark_count;
  const uint32_t sent = made < kFwMaxOpMarks ? made : kFwMaxOpMarks;
  uint8_t* p = put_u32(server->response, run);
  p = put_u32(p, made);
  p = put_u32(p, sent);
  for (uint32_t i = 0; i < sent; ++i) p = put_u64(p, server->op_marks[i]);
  reply_ok(server, request, (uint16_t)(kOpCountsHeaderBytes + 8 * sent));
}

static void handle_reset_state(FwServer* server, const FwFrame* request) {
  if (request->length != kResetRequestBytes) {
    reply_error(server, request->type, request->seq, kFwErrBadPayload, kResetRequestBytes);
    return;
  }
  /* Clears the state before inference run_count + 1: repeating it before that inference is
   * harmless, a delayed copy arriving after it is refused. */
  if (!check_position(server, request, server->run_count)) return;
  fw_model_reset();
  put_u32(server->response, server->run_count);
  reply_ok(server, request, kU32);
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
      handle_run(server, request);
      return;
    case kFwCmdReadOutput:
      handle_read_output(server, request);
      return;
    case kFwCmdResetState:
      handle_reset_state(server, request);
      return;
    case kFwCmdOpCounts:
      handle_op_counts(server, request);
      return;
    case kFwCmdHello:
      handle_hello(server, request);
      return;
    case kFwCmdStatus:
      if (expect_empty(server, request)) reply_status(server, request);
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
  /* A rejected frame changes nothing: in particular the stored RUN response survives it. */
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
  server->session = 0;
  server->session_owner = 0;
  server->run_count = 0;
  server->run_session = 0;
  server->run_owner = 0;
  server->op_mark_count = 0;
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

uint32_t fw_server_run_count(const FwServer* server) { return server->run_count; }

int fw_server_exit_requested(const FwServer* server) { return server->exit_requested; }
