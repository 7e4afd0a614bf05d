/* The few C library hooks a bare-metal program may reference, for a firmware without an
 * operating system or a heap. There is deliberately no _sbrk: anything that calls malloc fails
 * to link (and cmake/check_elf.cmake names the culprit). */
#include <errno.h>

#include "bsp.h"

/* abort() and exit() end here. */
void _exit(int code) { bsp_exit(code); }

/* abort() raises SIGABRT first; there is no process to signal. */
int _kill(int pid, int signal) {
  (void)pid;
  (void)signal;
  errno = EINVAL;
  return -1;
}

int _getpid(void) { return 1; }
