/* Test plug-in "crashnew": segfaults in newstack. Used by tests/faults.rs. */
#include <stddef.h>
#include <ioth.h>

void *ioth_crashnew_newstack(const char *vnlv[], struct ioth_functions *f) {
	(void) vnlv; (void) f;
	volatile int *p = NULL;
	*p = 42; /* SIGSEGV */
	return (void *) p;
}
