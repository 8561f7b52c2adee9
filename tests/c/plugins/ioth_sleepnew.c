/* Test plug-in "sleepnew": its newstack never returns. Used by tests/faults.rs. */
#include <unistd.h>
#include <ioth.h>

void *ioth_sleepnew_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	for (;;)
		pause();
}
