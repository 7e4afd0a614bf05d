/* Host build of the device side of the protocol (see fw_host_device.c). */
#ifndef FIRMWARE_HOST_FW_HOST_DEVICE_H_
#define FIRMWARE_HOST_FW_HOST_DEVICE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Starts a fresh server (and resets the model) with buffers of the given capacities, at most
 * 64 KiB each. */
void fw_host_init(uint32_t input_capacity, uint32_t output_capacity);

/* Feeds received bytes; returns how many response bytes are waiting. */
size_t fw_host_feed(const uint8_t* data, size_t n);

/* Simulates the device's idle-line timeout. */
void fw_host_timeout(void);

/* Moves up to capacity waiting response bytes into out; returns how many. */
size_t fw_host_take_output(uint8_t* out, size_t capacity);

int fw_host_exit_requested(void);
/* Inferences the server has run since fw_host_init. */
uint32_t fw_host_run_count(void);
int fw_host_in_frame(void);

#ifdef __cplusplus
}
#endif

#endif /* FIRMWARE_HOST_FW_HOST_DEVICE_H_ */
