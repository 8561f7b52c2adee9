/* The seed spelling: #include <libioth.h> works as #include <ioth.h>. */
#include "ioth.h"
