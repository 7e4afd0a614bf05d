/* libFuzzer target for the device side of the protocol: the parser and the command server with
 * the echo model (firmware/host/fw_host_device.c), built with ASan and UBSan.
 *
 * Input: byte 0 picks the buffer capacities; the rest is split into chunks, each preceded by a
 * control byte whose low 6 bits give the chunk length and whose top bit fires the idle timeout
 * after the chunk. Besides memory safety it checks the device's promise that whatever it sends
 * is a sequence of complete, valid frames (it must never emit garbage or half a frame).
 *
 *   clang -fsanitize=fuzzer,address,undefined ... && ./fw_server_fuzz -max_total_time=20 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fw_host_device.h"
#include "fw_protocol.h"

static FwParser g_checker;
static uint8_t g_output[1 << 16];

static void check_output(void) {
  const size_t n = fw_host_take_output(g_output, sizeof(g_output));
  for (size_t i = 0; i < n; ++i) {
    if (fw_parser_feed(&g_checker, g_output[i]) == kFwParseError) abort();
  }
  if (fw_parser_in_frame(&g_checker)) abort(); /* a response was cut short */
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  /* Small capacities exercise MODEL_TOO_LARGE; the echo model needs 256 and 260 bytes. */
  static const uint32_t kCapacities[4] = {0, 64, 260, 16384};
  fw_host_init(kCapacities[data[0] & 3], kCapacities[(data[0] >> 2) & 3]);
  fw_parser_init(&g_checker);
  size_t i = 1;
  while (i < size) {
    const uint8_t control = data[i++];
    size_t n = control & 0x3F;
    if (n > size - i) n = size - i;
    fw_host_feed(data + i, n);
    i += n;
    if (control & 0x80) fw_host_timeout();
    check_output();
  }
  fw_host_timeout();
  check_output();
  return 0;
}
